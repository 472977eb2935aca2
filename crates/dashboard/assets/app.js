// The dashboard's entry point: the hash router, the page shell (navigation,
// who is signed in, the flash message), sign-in and sign-out.
//
// Routes (all in the URL's hash, so the server serves one page):
//   #/signin               sign in with an API key
//   #/projects             projects, and the form to connect one
//   #/projects/<id>        a project: live sync, history, memory, search
//   #/ops?status=failed    syncs of every project by status, queue health
//   #/ops/syncs/<id>       one sync: steps, lease, error, actions
//
// Each view is `render(ctx)`: it fills `ctx.main`, registers what to stop
// when the page changes with `ctx.onLeave(fn)` (streams, timers), and
// checks `ctx.alive()` after each await so that a slow answer never draws
// over the next page.

import * as api from "./api.js";
import { h, fill, refreshTimes } from "./dom.js";
import { projectsView, projectView } from "./projects.js";
import { opsView, syncView } from "./ops.js";

const main = document.getElementById("main");
const flashBar = document.getElementById("flash-bar");
const flashEl = document.getElementById("flash");
const dialog = document.getElementById("confirm-dialog");

// ------------------------------------------------------------------ flash

// When the message was shown: a message older than a moment belongs to the
// page it was shown on and goes when the user moves to another page; one
// shown just before the move (e.g. "Signed out.") announces the new page.
let flashAt = 0;
const FLASH_CARRIES_MS = 1000;

/** Show a message (the last one replaces the one before). `body` may be text or nodes. */
function flash(kind, ...body) {
  flashAt = Date.now();
  flashEl.dataset.kind = kind;
  flashEl.setAttribute("role", kind === "error" ? "alert" : "status");
  fill(flashEl, ...body);
  flashBar.className = `flash-bar flash-${kind}`;
  flashBar.hidden = false;
}

function clearFlash() {
  flashEl.replaceChildren();
  flashBar.hidden = true;
}

/** Report an error: the API's own message, verbatim. A 401 was dealt with already. */
function flashError(err) {
  if (!err || err.handled) return;
  // Not an API error: a bug of this page, worth a trace in the console.
  if (!(err instanceof api.ApiError)) console.error(err);
  flash("error", err.message || String(err));
}

document.getElementById("flash-close").addEventListener("click", () => {
  clearFlash();
  main.focus();
});

// ----------------------------------------------------------------- dialog

let dialogOpener = null;

/**
 * Ask for confirmation in the page's `<dialog>`: resolves to true for OK.
 * Escape, or Cancel, resolves to false; focus goes back where it was.
 */
function confirmDialog({ title, text, ok = "OK" }) {
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = ok;
  dialogOpener = document.activeElement;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (dialogOpener && dialogOpener.isConnected) dialogOpener.focus();
        resolve(dialog.returnValue === "ok");
      },
      { once: true },
    );
  });
}

// ---------------------------------------------------------------- session

/** The sign-in page's message: why the session ended; kept until the next sign-in. */
let signinMessage = "";

api.setUnauthorizedHandler(() => {
  api.session.clear();
  signinMessage = api.SESSION_ENDED;
  showAccount();
  // Several requests of a page may fail at once: go to sign-in once.
  if (location.hash !== "#/signin") location.hash = "#/signin";
  else {
    const el = main.querySelector("[data-testid=signin-message]");
    if (el) {
      el.textContent = signinMessage;
      el.hidden = false;
    } else render();
  }
});

function showAccount() {
  const who = api.session.signedIn ? api.session.who : null;
  document.getElementById("mainnav").hidden = !who;
  document.getElementById("account").hidden = !who;
  document.getElementById("whoami").textContent = who ? `${who.tenant} · ${who.role}` : "";
  document.getElementById("whoami").title = who ? `tenant ${who.tenant}, role ${who.role}, key ${who.key_id}` : "";
}

document.getElementById("signout").addEventListener("click", async () => {
  try {
    await api.signOut();
    flash("info", "Signed out.");
  } catch (e) {
    // The session is forgotten here either way; a 401 means it was over already.
    if (e.status !== 401) flashError(e);
  }
  signinMessage = "";
  showAccount();
  location.hash = "#/signin";
});

function signinView(ctx) {
  document.title = "Sign in · projsync";
  const message = h(
    "p",
    { class: "signin-message", "data-testid": "signin-message", role: "alert", hidden: !signinMessage },
    signinMessage,
  );
  const key = h("input", {
    id: "signin-key",
    name: "key",
    type: "password",
    "data-testid": "signin-key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "psk_…",
    "aria-describedby": "signin-help",
  });
  const submit = h("button", { type: "submit", class: "button primary", "data-testid": "signin-submit" }, "Sign in");
  const form = h(
    "form",
    { class: "signin-form", "data-testid": "signin-form", novalidate: true },
    h("label", { for: "signin-key" }, "API key"),
    key,
    h(
      "p",
      { class: "help", id: "signin-help" },
      "A key of your tenant, created by an operator with ",
      h("code", null, "projsync key create --tenant NAME --role ROLE"),
      ". It is exchanged for a session cookie and not kept by the page.",
    ),
    submit,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = key.value.trim();
    if (!value) {
      message.textContent = "Enter an API key.";
      message.hidden = false;
      key.focus();
      return;
    }
    submit.disabled = true;
    try {
      await api.signIn(value);
      signinMessage = "";
      key.value = "";
      clearFlash();
      showAccount();
      location.hash = "#/projects";
    } catch (err) {
      if (!ctx.alive()) return;
      message.textContent = err.message;
      message.hidden = false;
      flashError(err);
      key.select();
    } finally {
      submit.disabled = false;
    }
  });
  fill(
    main,
    h(
      "section",
      { class: "signin" },
      h("h1", { tabindex: "-1" }, "Sign in"),
      h("p", { class: "lede" }, "The projsync console: projects, live syncs, memory and operations."),
      message,
      form,
    ),
  );
  if (ctx.focus) key.focus();
}

// ----------------------------------------------------------------- router

/** `#/ops/syncs/x?status=failed` → `{parts: ["ops","syncs","x"], params}` */
function parseHash() {
  const raw = location.hash.replace(/^#/, "");
  const [path, search = ""] = raw.split("?");
  return {
    parts: path.split("/").filter(Boolean).map(decodeURIComponent),
    params: new URLSearchParams(search),
  };
}

function notFound(ctx) {
  document.title = "Not found · projsync";
  fill(
    ctx.main,
    h("h1", { tabindex: "-1" }, "Not found"),
    h("p", null, "There is no such page. ", h("a", { href: "#/projects" }, "Back to the projects"), "."),
  );
}

let current = null; // the page on screen: { leave: [fn], alive }
let lastRoute = null;

function render() {
  const { parts, params } = parseHash();
  const route = parts.join("/");
  const section = parts[0] || "";

  if (section !== "signin" && !api.session.signedIn) {
    location.replace("#/signin");
    return;
  }
  if (!section) {
    location.replace("#/projects");
    return;
  }

  // Leave the previous page: close its streams, stop its timers.
  if (current) {
    current.gone = true;
    for (const fn of current.leave) {
      try {
        fn();
      } catch (e) {
        console.warn(e);
      }
    }
  }
  const page = { leave: [], gone: false };
  current = page;
  // Move focus to the new page's heading only when the page changed (not
  // when only its query did), so keyboard and screen reader users start there.
  const focus = lastRoute !== null && lastRoute !== route;
  lastRoute = route;
  if (focus && Date.now() - flashAt > FLASH_CARRIES_MS) clearFlash();
  const ctx = {
    main,
    params,
    focus,
    alive: () => !page.gone,
    onLeave: (fn) => page.leave.push(fn),
    flash,
    flashError,
    confirm: confirmDialog,
    navigate: (hash) => (location.hash = hash),
  };

  for (const link of document.querySelectorAll(".mainnav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }

  let view;
  if (section === "signin" && parts.length === 1) view = signinView;
  else if (section === "projects" && parts.length === 1) view = projectsView;
  else if (section === "projects" && parts.length === 2) view = (c) => projectView(c, parts[1]);
  else if (section === "ops" && parts.length === 1) view = opsView;
  else if (section === "ops" && parts[1] === "syncs" && parts.length === 3) view = (c) => syncView(c, parts[2]);
  else view = notFound;

  try {
    const result = view(ctx);
    if (result && typeof result.catch === "function") result.catch(flashError);
  } catch (e) {
    flashError(e);
  }
  if (focus && view !== signinView) {
    const heading = main.querySelector("h1");
    (heading || main).focus({ preventScroll: false });
  }
}

window.addEventListener("hashchange", render);

// The skip link must not change the hash (the router owns it).
document.getElementById("skip-link").addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});

// Relative times ("3 min ago") stay current.
setInterval(() => refreshTimes(main), 15000);

/** Start: check a stored session with GET /session (who am I), then route. */
async function boot() {
  showAccount();
  if (api.session.signedIn) {
    try {
      const who = await api.get("/session");
      api.session.who = { ...api.session.who, ...who };
      showAccount();
    } catch (e) {
      if (e.handled) return; // a 401: the handler sent us to sign-in
      flashError(e);
    }
  }
  render();
}

boot();
