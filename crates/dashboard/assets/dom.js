// DOM helpers and formatting. Every text from the API goes into the page
// through text nodes (`textContent`), never as markup: the Content Security
// Policy forbids inline scripts, and this keeps file names, messages and
// paths inert whatever they contain.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Append children: strings become text nodes; null, undefined and false are skipped. */
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/**
 * Set attributes: `class`, `text` (textContent), `on<event>` functions as
 * listeners, booleans as present/absent attributes (`hidden`, `disabled`,
 * ...), everything else with setAttribute (`data-*`, `aria-*`, `href`).
 * `value` and `checked` are set as properties.
 */
function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (name === "text") el.textContent = String(value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "value" || name === "checked") el[name] = value;
    else if (value === true) el.setAttribute(name, "");
    else if (value === false) el.removeAttribute(name);
    else el.setAttribute(name, String(value));
  }
  return el;
}

/** `h("a", {href: "#/x", class: "link"}, "text", child, ...)`: an HTML element. */
export function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Show or hide (the `hidden` attribute). */
export function show(el, visible) {
  el.hidden = !visible;
  return el;
}

/** A value for display: "—" for null, undefined and "". */
export function orDash(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

/** The first 8 characters of an id, the way the CLI shows them. */
export function shortId(id) {
  return id ? String(id).slice(0, 8) : "—";
}

/** A commit SHA, shortened. */
export function shortSha(sha) {
  return sha ? String(sha).slice(0, 12) : "—";
}

/** A duration in milliseconds, e.g. "850 ms", "12.3 s", "4 min 5 s", "2 h 3 min". */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  ms = Math.max(0, ms);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const secs = ms / 1000;
  if (secs < 60) return `${secs < 10 ? secs.toFixed(1) : Math.round(secs)} s`;
  const total = Math.round(secs);
  const m = Math.floor(total / 60);
  if (m < 60) return total % 60 ? `${m} min ${total % 60} s` : `${m} min`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return m % 60 ? `${hrs} h ${m % 60} min` : `${hrs} h`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

/** Milliseconds between two timestamps (the second defaults to now). */
export function between(from, to) {
  if (!from) return null;
  const end = to ? Date.parse(to) : Date.now();
  return end - Date.parse(from);
}

/** "just now", "12 s ago", "5 min ago", "in 30 s", ... */
export function relative(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "—";
  const diff = now - t;
  const abs = Math.abs(diff);
  if (abs < 5000) return "just now";
  let text;
  if (abs < 60e3) text = `${Math.round(abs / 1e3)} s`;
  else if (abs < 3600e3) text = `${Math.round(abs / 60e3)} min`;
  else if (abs < 86400e3) text = `${Math.round(abs / 3600e3)} h`;
  else text = `${Math.round(abs / 86400e3)} d`;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

const absoluteFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});

/** The local date and time, and the UTC timestamp, for a tooltip. */
export function absolute(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return String(iso);
  return `${absoluteFormat.format(t)} (${t.toISOString().replace(".000Z", "Z")})`;
}

/**
 * A `<time>` showing how long ago (or until) `iso`, the exact time in its
 * title. `refreshTimes` keeps the relative text current.
 */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: absolute(iso), "data-relative": "" }, relative(iso));
}

/** Bring every relative `<time>` under `root` up to date. */
export function refreshTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time[data-relative]")) {
    el.textContent = relative(el.getAttribute("datetime"), now);
  }
}

/** A status as a coloured label; its text is the status itself. */
export function badge(status, extraClass = "") {
  return h("span", { class: `badge badge-${status || "none"} ${extraClass}`.trim() }, status || "—");
}

/** A number as plain digits (tests and scripts read them back). */
export function num(n) {
  return n === null || n === undefined ? "—" : String(n);
}

/** Pretty JSON for a checkpoint or an option object. */
export function json(value) {
  return value === null || value === undefined ? "—" : JSON.stringify(value, null, 2);
}

/** A table wrapped so that it scrolls sideways on a narrow screen. */
export function table(attrs, headers, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      h("thead", null, h("tr", null, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, rows),
    ),
  );
}

/** A `<dl>` of label → value pairs (values may be nodes). */
export function facts(pairs, attrs = { class: "facts" }) {
  return h(
    "dl",
    attrs,
    pairs
      .filter(Boolean)
      .map(([label, value, ddAttrs]) => h("div", null, h("dt", null, label), h("dd", ddAttrs || null, value))),
  );
}
