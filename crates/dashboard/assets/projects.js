// Projects: the list with the form to connect a repository, and one
// project's page (branch and Sync, the live banner, history with Restore,
// the memory browser and search).

import * as api from "./api.js";
import { h, fill, show, time, badge, num, shortId, shortSha, duration, between, facts, dataTable } from "./dom.js";
import { SyncBanner } from "./progress.js";

const enc = encodeURIComponent;

/** `latest_sync.status`, "never" when there is none, "—" when the API does not say. */
function lastStatus(project) {
  if (project.latest_sync === undefined) return "—";
  return project.latest_sync ? project.latest_sync.status : "never";
}

function repoText(repo) {
  return `${repo.provider}: ${repo.location}`;
}

// ----------------------------------------------------------- projects list

export async function projectsView(ctx) {
  document.title = "Projects · projsync";
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "button", "data-testid": "projects-more", hidden: true }, "Load more");
  const count = h("span", { class: "muted" });
  let cursor = null;
  let loaded = 0;

  fill(
    ctx.main,
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Projects"), count),
    dataTable({ "data-testid": "projects-table" }, ["Name", "Repository", "Branch", "Last sync", "Entries", "Created"], tbody),
    h("div", { class: "list-foot" }, more),
    connectForm(ctx),
  );

  function row(p) {
    const latest = p.latest_sync;
    return h(
      "tr",
      { "data-testid": "project-row", "data-project-id": p.id },
      h("th", { scope: "row" }, h("a", { href: `#/projects/${p.id}`, "data-testid": "project-link" }, p.name)),
      h("td", { "data-testid": "project-repo", class: "mono wrap" }, repoText(p.repository)),
      h("td", { "data-testid": "project-branch", class: "mono" }, p.repository.default_branch),
      h(
        "td",
        null,
        h(
          "span",
          {
            "data-testid": "project-last-status",
            class: `badge badge-${latest ? latest.status : "none"}`,
            title: latest ? `${latest.kind} ${latest.id}, created ${latest.created_at}` : null,
          },
          lastStatus(p),
        ),
        // When it ended (or was asked for), the commit it read, how long it took.
        latest ? h("span", { class: "muted small" }, " ", time(latest.finished_at || latest.created_at)) : null,
        latest && latest.head_commit
          ? h("span", { class: "muted small", "data-testid": "project-last-commit" }, " · ", h("code", null, shortSha(latest.head_commit)))
          : null,
        latest && latest.started_at && latest.finished_at
          ? h("span", { class: "muted small", "data-testid": "project-last-took" }, " · ", duration(between(latest.started_at, latest.finished_at)))
          : null,
      ),
      h("td", { "data-testid": "project-entries", class: "num" }, p.active_entries === undefined ? "—" : num(p.active_entries)),
      h("td", null, time(p.created_at)),
    );
  }

  async function load() {
    more.disabled = true;
    try {
      const pg = await api.page("/projects", { limit: 100, cursor });
      if (!ctx.alive()) return;
      if (!cursor && pg.items.length === 0) {
        fill(tbody, h("tr", null, h("td", { colspan: "6", class: "empty" }, "No projects yet: connect a repository below.")));
      } else {
        if (!cursor) tbody.replaceChildren();
        tbody.append(...pg.items.map(row));
      }
      loaded += pg.items.length;
      count.textContent = pg.next ? `${loaded} shown` : `${loaded} in all`;
      cursor = pg.next;
      show(more, Boolean(cursor));
    } catch (e) {
      ctx.flashError(e);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", load);
  await load();
}

/** The form to connect a local or GitHub repository (POST /projects). */
function connectForm(ctx) {
  const field = (label, input, hint) =>
    h("div", { class: "field" }, h("label", { for: input.id }, label), input, hint ? h("p", { class: "help" }, hint) : null);
  const text = (id, testid, attrs = {}) =>
    h("input", { id, name: id, type: "text", "data-testid": testid, autocomplete: "off", spellcheck: "false", ...attrs });

  const name = text("connect-name", "connect-name", { required: true, maxlength: "200" });
  const kind = h(
    "select",
    { id: "connect-kind", name: "kind", "data-testid": "connect-kind" },
    h("option", { value: "local" }, "local — a Git repository on the workers' disk"),
    h("option", { value: "github" }, "github — GitHub or GitHub Enterprise"),
  );
  const path = text("connect-path", "connect-path", { placeholder: "/srv/git/web", required: true });
  const owner = text("connect-owner", "connect-owner", { placeholder: "acme" });
  const repo = text("connect-repo", "connect-repo", { placeholder: "widgets" });
  const credential = text("connect-credential", "connect-credential", { placeholder: "none: a public repository" });
  const branch = text("connect-branch", "connect-branch", { value: "main", required: true });
  const error = h("p", { class: "form-error", "data-testid": "connect-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "button primary", "data-testid": "connect-submit" }, "Connect");

  const localFields = h(
    "div",
    { class: "field-group" },
    field("Path", path, "Absolute path of the repository, under one of the server's sources.local.allowed_roots."),
  );
  const githubFields = h(
    "div",
    { class: "field-group", hidden: true },
    field("Owner", owner),
    field("Repository", repo),
    field("Credential", credential, "The name of a credential an operator registered for your tenant (projsync credential add)."),
  );

  function syncKind() {
    const github = kind.value === "github";
    localFields.hidden = github;
    githubFields.hidden = !github;
    // Hidden fields must not block the form.
    path.required = !github;
    path.disabled = github;
    owner.required = repo.required = github;
    owner.disabled = repo.disabled = credential.disabled = !github;
  }
  kind.addEventListener("change", syncKind);
  syncKind();

  const form = h(
    "form",
    { class: "connect", "data-testid": "connect-form" },
    h("h2", null, "Connect a repository"),
    h("div", { class: "form-grid" }, field("Name", name), field("Source", kind), localFields, githubFields, field("Default branch", branch)),
    error,
    h("div", { class: "form-actions" }, submit),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    const repository =
      kind.value === "github"
        ? {
            provider: "github",
            repository: `${owner.value.trim()}/${repo.value.trim()}`,
            branch: branch.value.trim(),
            ...(credential.value.trim() ? { credential: credential.value.trim() } : {}),
          }
        : { provider: "local", path: path.value.trim(), branch: branch.value.trim() };
    submit.disabled = true;
    try {
      const project = await api.post("/projects", { name: name.value.trim(), repository });
      ctx.flash("info", `Connected ${project.name}.`);
      ctx.navigate(`#/projects/${project.id}`);
    } catch (err) {
      if (!ctx.alive() || err.handled) return;
      error.textContent = err.message;
      error.hidden = false;
      ctx.flashError(err);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// ------------------------------------------------------------ project page

export async function projectView(ctx, id) {
  document.title = "Project · projsync";
  const title = h("h1", { "data-testid": "project-name", tabindex: "-1" }, "Project");
  const meta = h("div", { class: "project-meta" });
  const branchSelect = h("select", { id: "branch-select", "data-testid": "branch-select", disabled: true });
  const syncButton = h("button", { type: "button", class: "button primary", "data-testid": "sync-button" }, "Sync");
  const noSync = h("p", { class: "muted", hidden: true }, "No sync yet: choose a branch and press Sync.");
  const banner = new SyncBanner({
    onEnd: () => {
      loadHistory(true);
      loadProject();
      memory.reload();
    },
    onStatus: () => loadHistory(true),
    onError: ctx.flashError,
    onInfo: (text) => ctx.flash("info", text),
  });
  ctx.onLeave(() => banner.stop());

  const history = historySection(ctx, id, {
    restore: async (sync) => {
      const ok = await ctx.confirm({
        title: "Restore the knowledge base?",
        text:
          `The active entries become what they were right after sync ${shortId(sync.id)} ` +
          `(branch ${sync.branch}, ${sync.head_commit ? `commit ${shortSha(sync.head_commit)}, ` : ""}` +
          `finished ${sync.finished_at ? new Date(sync.finished_at).toLocaleString() : "—"}). ` +
          "A restore sync records it; the history keeps every version.",
        ok: "Restore",
      });
      if (!ok || !ctx.alive()) return;
      try {
        const r = await api.post(`/projects/${enc(id)}/memory/restore`, { sync_id: sync.id });
        ctx.flash(
          "info",
          r.created ? `Restore to ${shortId(sync.id)} queued.` : "A sync of this project is already queued or running: following it.",
        );
        noSync.hidden = true;
        banner.follow(r.sync);
        loadHistory(true);
      } catch (e) {
        ctx.flashError(e);
      }
    },
  });
  const memory = memorySection(ctx, id);
  const loadHistory = history.load;
  const schedule = scheduleForm(ctx, id, (p) => {
    project = p;
    drawMeta(p);
  });

  fill(
    ctx.main,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/projects" }, "Projects"), " / "),
    h("div", { class: "page-head" }, title),
    meta,
    h(
      "div",
      { class: "sync-controls" },
      h("label", { for: "branch-select" }, "Branch"),
      branchSelect,
      syncButton,
    ),
    noSync,
    banner.el,
    schedule.el,
    history.el,
    memory.el,
  );

  let project = null;

  async function loadProject() {
    try {
      const p = await api.get(`/projects/${enc(id)}`);
      if (!ctx.alive()) return null;
      project = p;
      history.setProject(p);
      title.textContent = p.name;
      document.title = `${p.name} · projsync`;
      drawMeta(p);
      schedule.set(p);
      return p;
    } catch (e) {
      if (!ctx.alive()) return null;
      ctx.flashError(e);
      if (e.status === 404 && !e.missing && !project) {
        fill(
          ctx.main,
          h("h1", { tabindex: "-1" }, "No such project"),
          h("p", null, "It does not exist, or belongs to another tenant. ", h("a", { href: "#/projects" }, "Back to the projects"), "."),
        );
      }
      return null;
    }
  }

  function drawMeta(p) {
    const r = p.repository;
    fill(
      meta,
      facts([
        ["Repository", h("span", { class: "mono wrap" }, repoText(r))],
        ["Default branch", h("span", { class: "mono" }, r.default_branch)],
        r.credential ? ["Credential", h("span", { class: "mono" }, r.credential)] : null,
        ["Last synced commit", h("span", { class: "mono", title: r.last_synced_commit || "" }, shortSha(r.last_synced_commit))],
        ["Active entries", p.active_entries === undefined ? "—" : num(p.active_entries)],
        ["Schedule", p.schedule ? h("span", { class: "mono" }, p.schedule) : "none", { "data-testid": "project-schedule" }],
        p.schedule ? ["Next scheduled sync", time(p.next_scheduled_at), { "data-testid": "project-next-run" }] : null,
        ["Created", time(p.created_at)],
      ]),
    );
  }

  async function loadBranches(defaultBranch) {
    const fallback = () => fill(branchSelect, h("option", { value: defaultBranch }, `${defaultBranch} (default)`));
    try {
      const branches = await api.get(`/projects/${enc(id)}/branches`);
      if (!ctx.alive()) return;
      if (!branches.length) fallback();
      else {
        fill(
          branchSelect,
          branches.map((b) =>
            h("option", { value: b.name, title: b.head }, b.default ? `${b.name} (default)` : b.name),
          ),
        );
        const def = branches.find((b) => b.default);
        branchSelect.value = def ? def.name : defaultBranch;
      }
    } catch (e) {
      if (!ctx.alive()) return;
      fallback();
      ctx.flashError(e);
    } finally {
      branchSelect.disabled = false;
    }
  }

  syncButton.addEventListener("click", async () => {
    syncButton.disabled = true;
    try {
      const branch = branchSelect.value || null;
      const r = await api.post(`/projects/${enc(id)}/syncs`, { branch });
      if (!ctx.alive()) return;
      ctx.flash(
        "info",
        r.created ? `Sync of ${r.sync.branch} queued.` : "A sync of this project is already queued or running: following it.",
      );
      noSync.hidden = true;
      banner.follow(r.sync);
      loadHistory(true);
    } catch (e) {
      ctx.flashError(e);
    } finally {
      syncButton.disabled = false;
    }
  });

  const p = await loadProject();
  if (!p) {
    syncButton.disabled = true;
    return;
  }
  loadBranches(p.repository.default_branch);
  memory.reload();
  const firstPage = await loadHistory(true);
  if (!ctx.alive()) return;

  // The banner follows the latest sync or restore (the API's latest_sync;
  // from the history when the API does not give it).
  let latest = p.latest_sync;
  if (latest === undefined) latest = (firstPage || []).find((s) => s.kind === "sync" || s.kind === "restore") || null;
  if (latest) banner.follow(latest);
  else noSync.hidden = false;
}

/**
 * The project's schedule (PATCH /projects/{id}): set or clear it. A role
 * too low for it is the API's 403, shown like any error.
 */
function scheduleForm(ctx, id, onSaved) {
  const input = h("input", {
    id: "schedule-input",
    name: "schedule",
    type: "text",
    "data-testid": "schedule-input",
    autocomplete: "off",
    spellcheck: "false",
    maxlength: "200",
    placeholder: "every 15m, or */30 * * * * (UTC)",
  });
  const save = h("button", { type: "submit", class: "button", "data-testid": "schedule-save" }, "Save schedule");
  const clear = h("button", { type: "button", class: "button", "data-testid": "schedule-clear" }, "Clear");
  const error = h("p", { class: "form-error", "data-testid": "schedule-error", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "schedule-form", "data-testid": "schedule-form" },
    h("label", { for: "schedule-input" }, "Schedule"),
    input,
    save,
    clear,
    h(
      "p",
      { class: "help" },
      "Syncs by itself: every <n><s|m|h|d> (at least 10s) or a cron expression in UTC. A sync that finds nothing changed costs one lookup.",
    ),
    error,
  );

  async function send(value) {
    error.hidden = true;
    save.disabled = clear.disabled = true;
    try {
      const r = await api.request("PATCH", `/projects/${enc(id)}`, { schedule: value });
      if (!ctx.alive()) return;
      const p = r.data;
      input.value = p.schedule || "";
      ctx.flash("info", p.schedule ? `Schedule set: ${p.schedule}.` : "Schedule cleared.");
      onSaved(p);
    } catch (err) {
      if (!ctx.alive() || err.handled) return;
      error.textContent = err.message;
      error.hidden = false;
      ctx.flashError(err);
    } finally {
      save.disabled = clear.disabled = false;
    }
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const value = input.value.trim();
    send(value ? value : null);
  });
  clear.addEventListener("click", () => send(null));

  return {
    el: h("section", { class: "section", "aria-label": "Schedule" }, form),
    set(p) {
      if (document.activeElement !== input) input.value = p.schedule || "";
    },
  };
}

/** The history table: a page at a time, newest first. */
function historySection(ctx, id, { restore }) {
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "button", "data-testid": "history-more", hidden: true }, "Load more");
  let cursor = null;
  let project = null;
  let rows = [];

  const el = h(
    "section",
    { class: "section", "aria-labelledby": "history-title" },
    h("h2", { id: "history-title" }, "History"),
    dataTable(
      { "data-testid": "history-table" },
      ["Sync", "Kind", "Trigger", "Branch", "Status", "Outcome", "Changes", "Commit", "Created", "Took", h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions"))],
      tbody,
    ),
    h("div", { class: "list-foot" }, more),
  );

  /** The sync whose state the active entries are: the last success, or what it restored. */
  function activeStateIds() {
    const ids = new Set();
    if (!project || !project.last_sync_id) return ids;
    ids.add(project.last_sync_id);
    const last = rows.find((s) => s.id === project.last_sync_id);
    if (last && last.restore_of_sync_id) ids.add(last.restore_of_sync_id);
    return ids;
  }

  /** What a sync changed, the non-zero counts only. */
  function changes(st) {
    if (!st) return "—";
    const parts = [
      ["+", st.added, "added"],
      ["~", st.modified, "modified"],
      ["−", st.deleted, "deleted"],
      ["→", st.renamed, "renamed"],
      ["=", st.unchanged, "unchanged"],
      ["skipped ", st.skipped, "skipped"],
    ];
    const shown = parts.filter(([, n]) => n > 0);
    if (!shown.length) return h("span", { class: "muted" }, "—");
    return h(
      "span",
      { class: "changes" },
      shown.map(([sign, n, label]) => h("span", { class: `chg chg-${label}`, title: `${n} ${label}` }, `${sign}${n}`)),
    );
  }

  function row(s, active) {
    const restorable = s.kind === "sync" && s.status === "succeeded" && !active.has(s.id);
    return h(
      "tr",
      { "data-testid": "history-row", "data-sync-id": s.id, "data-status": s.status, "data-kind": s.kind },
      h(
        "th",
        { scope: "row" },
        h("a", { href: `#/ops/syncs/${s.id}`, class: "mono", title: s.id }, shortId(s.id)),
        active.has(s.id) ? h("span", { class: "tag", title: "The active entries are this sync's state" }, "active") : null,
      ),
      h("td", null, s.kind, s.restore_of_sync_id ? h("span", { class: "muted small" }, ` of ${shortId(s.restore_of_sync_id)}`) : null),
      h("td", { "data-testid": "history-trigger", class: "mono", title: s.trigger || "" }, s.trigger || "—"),
      h("td", { class: "mono" }, s.branch),
      h("td", null, badge(s.status)),
      h(
        "td",
        { class: "outcome" },
        s.outcome || (s.status === "failed" ? h("span", { class: "error-text", title: s.error_message || "" }, s.failed_phase ? `in ${s.failed_phase}` : "failed") : "—"),
      ),
      h("td", null, changes(s.stats)),
      h("td", { class: "mono", title: s.head_commit || "" }, shortSha(s.head_commit)),
      h("td", null, time(s.created_at)),
      h("td", { class: "num" }, s.started_at ? duration(between(s.started_at, s.finished_at)) : "—"),
      h(
        "td",
        { class: "actions" },
        restorable
          ? h(
              "button",
              {
                type: "button",
                class: "button small",
                "data-testid": "restore-button",
                "aria-label": `Restore to sync ${shortId(s.id)}`,
                onclick: () => restore(s),
              },
              "Restore",
            )
          : null,
      ),
    );
  }

  function draw() {
    const active = activeStateIds();
    if (!rows.length) fill(tbody, h("tr", null, h("td", { colspan: "11", class: "empty" }, "No syncs yet.")));
    else fill(tbody, rows.map((s) => row(s, active)));
  }

  /** Load the first page again (`fresh`), or the next one; returns the page's items. */
  async function load(fresh) {
    more.disabled = true;
    try {
      const pg = await api.page(`/projects/${enc(id)}/syncs`, { limit: 20, cursor: fresh ? null : cursor });
      if (!ctx.alive()) return null;
      rows = fresh ? pg.items : rows.concat(pg.items);
      cursor = pg.next;
      show(more, Boolean(cursor));
      draw();
      return pg.items;
    } catch (e) {
      if (ctx.alive()) ctx.flashError(e);
      return null;
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", () => load(false));

  return {
    el,
    load,
    setProject(p) {
      project = p;
      if (rows.length) draw();
    },
  };
}

/** The active entries, a page at a time, an entry's content, and search. */
function memorySection(ctx, id) {
  const list = h("ul", { class: "memory-list", "data-testid": "memory-list", "aria-label": "Active entries" });
  const more = h("button", { type: "button", class: "button", "data-testid": "memory-more", hidden: true }, "Load more");
  const listCount = h("span", { class: "muted small" });
  const viewer = h("div", { class: "entry-viewer", "aria-live": "polite" }, h("p", { class: "muted" }, "Choose an entry or a search result to see its content."));
  const results = h("div", { class: "search-results", hidden: true });
  const input = h("input", {
    id: "search-input",
    type: "search",
    "data-testid": "search-input",
    placeholder: "Search: a question, a name, some words",
    required: true,
    autocomplete: "off",
  });
  const mode = h(
    "select",
    { id: "search-mode", "data-testid": "search-mode", "aria-label": "Ranking" },
    h("option", { value: "hybrid" }, "hybrid"),
    h("option", { value: "semantic" }, "by meaning"),
    h("option", { value: "keyword" }, "by keyword"),
  );
  const submit = h("button", { type: "submit", class: "button", "data-testid": "search-submit" }, "Search");
  const form = h(
    "form",
    { class: "search-form", "data-testid": "search-form", role: "search" },
    h("label", { for: "search-input", class: "visually-hidden" }, "Search the knowledge base"),
    input,
    mode,
    submit,
  );

  let cursor = null;
  let entries = new Map(); // path → ActiveEntry of the loaded pages
  let selected = null;

  const el = h(
    "section",
    { class: "section", "aria-labelledby": "memory-title" },
    h("h2", { id: "memory-title" }, "Memory"),
    form,
    results,
    h(
      "div",
      { class: "memory" },
      h("div", { class: "memory-nav" }, h("div", { class: "memory-nav-head" }, h("h3", null, "Active entries"), listCount), list, more),
      viewer,
    ),
  );

  function showEntry(entry, note) {
    selected = entry.path;
    for (const b of list.querySelectorAll("[data-testid=memory-item]")) {
      b.setAttribute("aria-pressed", String(b.dataset.path === selected));
    }
    fill(
      viewer,
      h("h3", { class: "entry-path mono", "data-testid": "entry-path" }, entry.path),
      h(
        "p",
        { class: "entry-meta muted small" },
        entry.language ? `${entry.language} · ` : "",
        entry.created_by_sync_id
          ? ["written by sync ", h("a", { href: `#/ops/syncs/${entry.created_by_sync_id}`, class: "mono" }, shortId(entry.created_by_sync_id))]
          : "",
        entry.content_hash ? h("span", { class: "mono", title: entry.content_hash }, ` · ${String(entry.content_hash).slice(0, 12)}`) : "",
      ),
      note ? h("p", { class: "notice small" }, note) : null,
      h("pre", { class: "entry-content", "data-testid": "entry-content", tabindex: "0" }, entry.content),
    );
  }

  function item(entry) {
    return h(
      "li",
      null,
      h(
        "button",
        {
          type: "button",
          class: "memory-item mono",
          "data-testid": "memory-item",
          "data-path": entry.path,
          "aria-pressed": String(entry.path === selected),
          onclick: () => showEntry(entry),
        },
        entry.path,
      ),
    );
  }

  async function load(fresh) {
    more.disabled = true;
    try {
      const pg = await api.page(`/projects/${enc(id)}/memory`, { limit: 50, cursor: fresh ? null : cursor });
      if (!ctx.alive()) return;
      if (fresh) {
        entries = new Map();
        list.replaceChildren();
      }
      for (const e of pg.items) entries.set(e.path, e);
      list.append(...pg.items.map(item));
      if (!entries.size) fill(list, h("li", { class: "empty" }, "No active entries: sync the project first."));
      cursor = pg.next;
      show(more, Boolean(cursor));
      listCount.textContent = cursor ? `${entries.size} shown` : `${entries.size}`;
    } catch (e) {
      if (ctx.alive()) ctx.flashError(e);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", () => load(false));

  /** A search result's whole entry: GET /memory/entry, else what the page has. */
  async function openResult(result) {
    try {
      const entry = await api.get(`/projects/${enc(id)}/memory/entry${api.query({ path: result.path })}`);
      if (ctx.alive()) showEntry(entry);
    } catch (e) {
      if (!ctx.alive() || e.handled) return;
      const known = entries.get(result.path);
      if (e.missing && known) return showEntry(known);
      if (e.missing || (e.status === 404 && result.sync_id)) {
        // Not an active entry (a search as of an older sync), or an API
        // without the endpoint: show the chunk that matched.
        return showEntry(
          { path: result.path, content: result.content, created_by_sync_id: result.sync_id },
          `Lines ${result.start_line}–${result.end_line} only: the whole entry is not available${e.missing ? " from this server" : ""}.`,
        );
      }
      ctx.flashError(e);
    }
  }

  function closeResults() {
    results.hidden = true;
    input.focus();
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = input.value.trim();
    if (!q) return input.focus();
    submit.disabled = true;
    try {
      const r = await api.post(`/projects/${enc(id)}/search`, { query: q, mode: mode.value, k: 20 });
      if (!ctx.alive()) return;
      results.hidden = false;
      fill(
        results,
        h(
          "div",
          { class: "results-head" },
          h("h3", null, `${r.results.length} result${r.results.length === 1 ? "" : "s"}`),
          h("span", { class: "muted small" }, `${r.mode}${r.model ? ` · ${r.model}` : ""}${r.query_truncated ? " · query truncated" : ""}`),
          h("button", { type: "button", class: "button subtle small", onclick: closeResults }, "Close"),
        ),
        r.semantic ? h("p", { class: "notice small" }, `Ranked by keyword only: ${r.semantic}`) : null,
        r.results.length
          ? h(
              "ol",
              { class: "result-list" },
              r.results.map((res) =>
                h(
                  "li",
                  null,
                  h(
                    "button",
                    { type: "button", class: "search-result", "data-testid": "search-result", "data-path": res.path, onclick: () => openResult(res) },
                    h("span", { class: "result-head" }, h("span", { class: "mono result-path" }, res.path), h("span", { class: "muted small" }, ` lines ${res.start_line}–${res.end_line} · score ${res.score.toFixed(3)}`)),
                    h("span", { class: "result-snippet mono" }, snippet(res.content)),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted" }, "Nothing matched."),
      );
    } catch (err) {
      ctx.flashError(err);
    } finally {
      submit.disabled = false;
    }
  });

  return { el, reload: () => load(true) };
}

/** The first lines of a chunk. */
function snippet(text, lines = 4) {
  const all = String(text).split("\n");
  return all.slice(0, lines).join("\n") + (all.length > lines ? "\n…" : "");
}
