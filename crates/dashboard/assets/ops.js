// Operations: syncs of every project by status (with bulk retry), queue
// health (depth, oldest, workers, throughput), and one sync in detail with
// the four actions.

import * as api from "./api.js";
import { h, s, fill, show, time, badge, num, orDash, shortId, shortSha, duration, between, json, facts, dataTable } from "./dom.js";
import { PHASES, isTerminal } from "./progress.js";

const enc = encodeURIComponent;
const STATUSES = ["queued", "running", "failed", "cancelled"];
const QUEUE_EVERY_MS = 5000;
const DETAIL_EVERY_MS = 3000;

/**
 * Run `fn` every `ms` (and at once unless `later`) while the page is shown
 * and the tab visible, until it returns false; stopped on leave.
 */
function poll(ctx, ms, fn, { later = false } = {}) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped || !ctx.alive()) return;
    if (!document.hidden) {
      const again = await fn();
      if (again === false) return;
    }
    if (!stopped && ctx.alive()) timer = setTimeout(tick, ms);
  };
  const onVisible = () => {
    if (!document.hidden && !stopped) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener("visibilitychange", onVisible);
  ctx.onLeave(() => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisible);
  });
  if (later) timer = setTimeout(tick, ms);
  else tick();
}

/** Project names by id (a few pages of GET /projects), for tables of syncs. */
async function projectNames() {
  const names = new Map();
  let cursor = null;
  for (let i = 0; i < 10; i++) {
    const pg = await api.page("/projects", { limit: 100, cursor });
    for (const p of pg.items) names.set(p.id, p.name);
    cursor = pg.next;
    if (!cursor) break;
  }
  return names;
}

function phaseOf(sync) {
  if (sync.status === "failed") return sync.failed_phase;
  return sync.current_phase || sync.failed_phase;
}

// ---------------------------------------------------------------- ops page

export async function opsView(ctx) {
  document.title = "Operations · projsync";
  let status = ctx.params.get("status");
  if (!STATUSES.includes(status)) status = "failed";

  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Syncs by status" },
    STATUSES.map((st) =>
      h(
        "a",
        {
          href: `#/ops?status=${st}`,
          class: `tab tab-${st}`,
          "data-testid": "status-tab",
          "data-status": st,
          "aria-current": st === status ? "page" : null,
        },
        st,
      ),
    ),
  );
  const tbody = h("tbody");
  const selectAll = h("input", { type: "checkbox", "data-testid": "ops-select-all", "aria-label": "Select every sync shown" });
  const bulk = h("button", { type: "button", class: "button", "data-testid": "bulk-retry", disabled: true }, "Retry selected");
  const refresh = h("button", { type: "button", class: "button subtle", "data-testid": "ops-refresh" }, "Refresh");
  const more = h("button", { type: "button", class: "button", "data-testid": "ops-more", hidden: true }, "Load more");
  const count = h("span", { class: "muted small" });
  const health = queueHealth(ctx);

  fill(
    ctx.main,
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Operations")),
    health.summary,
    h(
      "section",
      { class: "section", "aria-labelledby": "syncs-title" },
      h("h2", { id: "syncs-title" }, "Syncs"),
      tabs,
      h("div", { class: "toolbar" }, bulk, refresh, h("span", { class: "spacer" }), count),
      dataTable(
        { "data-testid": "ops-table" },
        [
          h("th", { scope: "col", class: "select" }, selectAll),
          ...["Sync", "Project", "Kind", "Trigger", "Branch", "Phase", "Attempts", "Error", "Created", "Ended"],
        ],
        tbody,
      ),
      h("div", { class: "list-foot" }, more),
    ),
    health.details,
  );

  let names = new Map();
  let cursor = null;
  let shown = 0;

  const boxes = () => [...tbody.querySelectorAll("[data-testid=ops-select]")];
  function selectionChanged() {
    const all = boxes();
    const picked = all.filter((b) => b.checked).length;
    bulk.disabled = picked === 0;
    bulk.textContent = picked ? `Retry selected (${picked})` : "Retry selected";
    selectAll.checked = all.length > 0 && picked === all.length;
    selectAll.indeterminate = picked > 0 && picked < all.length;
  }
  selectAll.addEventListener("change", () => {
    for (const b of boxes()) b.checked = selectAll.checked;
    selectionChanged();
  });

  function row(sync) {
    const box = h("input", {
      type: "checkbox",
      "data-testid": "ops-select",
      value: sync.id,
      "aria-label": `Select sync ${shortId(sync.id)}`,
      onchange: selectionChanged,
    });
    const projectName = names.get(sync.project_id);
    const when = sync.finished_at || (sync.status === "queued" && sync.not_before) || null;
    return h(
      "tr",
      { "data-testid": "ops-row", "data-sync-id": sync.id, "data-status": sync.status },
      h("td", { class: "select" }, box),
      h("th", { scope: "row" }, h("a", { href: `#/ops/syncs/${sync.id}`, "data-testid": "ops-link", class: "mono", title: sync.id }, shortId(sync.id))),
      h("td", null, h("a", { href: `#/projects/${sync.project_id}` }, projectName || shortId(sync.project_id))),
      h("td", null, sync.kind),
      h("td", { "data-testid": "ops-trigger", class: "mono", title: sync.trigger || "" }, orDash(sync.trigger)),
      h("td", { class: "mono" }, sync.branch),
      h("td", null, orDash(phaseOf(sync))),
      h("td", { class: "num" }, num(sync.attempts)),
      h(
        "td",
        { class: "error-cell" },
        sync.error_class ? h("span", { class: "tag tag-error" }, sync.error_class) : null,
        sync.error_message ? h("span", { class: "truncate", title: sync.error_message }, sync.error_message) : sync.error_class ? null : "—",
      ),
      h("td", null, time(sync.created_at)),
      h("td", null, sync.status === "queued" && sync.not_before ? ["retry ", time(sync.not_before)] : time(when)),
    );
  }

  async function load(fresh) {
    more.disabled = true;
    try {
      const pg = await api.page("/syncs", { status, limit: 50, cursor: fresh ? null : cursor });
      if (!ctx.alive()) return;
      if (fresh) {
        tbody.replaceChildren();
        shown = 0;
      }
      shown += pg.items.length;
      tbody.append(...pg.items.map(row));
      if (!shown) fill(tbody, h("tr", null, h("td", { colspan: "11", class: "empty" }, `No ${status} syncs.`)));
      cursor = pg.next;
      show(more, Boolean(cursor));
      count.textContent = cursor ? `${shown} shown` : `${shown} ${status}`;
      selectionChanged();
    } catch (e) {
      if (ctx.alive()) ctx.flashError(e);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", () => load(false));
  refresh.addEventListener("click", () => load(true));

  bulk.addEventListener("click", async () => {
    const ids = boxes().filter((b) => b.checked).map((b) => b.value);
    if (!ids.length) return;
    bulk.disabled = true;
    try {
      const results = await retryMany(ids);
      if (!ctx.alive()) return;
      reportRetries(ctx, results);
      await load(true);
      health.refresh();
    } catch (e) {
      ctx.flashError(e);
      selectionChanged();
    }
  });

  try {
    names = await projectNames();
  } catch (e) {
    if (e.handled) return;
    // Names are a nicety: ids are shown instead.
  }
  if (!ctx.alive()) return;
  await load(true);
}

/**
 * POST /syncs/retry with the ids (at most 100 at a time); on a server
 * without that endpoint, one POST /syncs/{id}/retry each, in the same
 * result shape.
 */
async function retryMany(ids) {
  const results = [];
  for (let i = 0; i < ids.length; i += 100) {
    const chunk = ids.slice(i, i + 100);
    try {
      const r = await api.post("/syncs/retry", { ids: chunk, from_start: false });
      results.push(...r.results);
    } catch (e) {
      if (!e.missing) throw e;
      for (const id of chunk) {
        try {
          const sync = await api.post(`/syncs/${enc(id)}/retry`, {});
          results.push({ id, status: 202, sync, error: null });
        } catch (err) {
          if (err.handled) throw err;
          results.push({ id, status: err.status, sync: null, error: { code: err.code, message: err.message } });
        }
      }
    }
  }
  return results;
}

function reportRetries(ctx, results) {
  const failed = results.filter((r) => r.error);
  const ok = results.length - failed.length;
  const summary =
    failed.length === 0
      ? `${ok} sync${ok === 1 ? "" : "s"} queued again.`
      : `${ok} of ${results.length} sync${results.length === 1 ? "" : "s"} queued again; ${failed.length} could not be retried.`;
  ctx.flash(
    failed.length ? "error" : "info",
    h("p", null, summary),
    h(
      "ul",
      { class: "flash-list" },
      results.map((r) =>
        h(
          "li",
          { "data-sync-id": r.id, "data-result": r.error ? "error" : "ok" },
          h("code", null, r.id),
          r.error ? `: ${r.error.message}` : `: queued again (${r.status})`,
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------ queue health

function queueHealth(ctx) {
  const depth = h("span", { class: "stat-value", "data-testid": "queue-depth" }, "—");
  const oldest = h("span", { class: "stat-value", "data-testid": "queue-oldest" }, "—");
  const running = h("span", { class: "stat-value", "data-testid": "queue-running" }, "—");
  const workersBody = h("tbody");
  const chartBox = h("div", { class: "chart-box" }, throughputChart(null));
  const legend = h("p", { class: "legend small" });
  const updated = h("span", { class: "muted small", "aria-live": "off" });
  const notice = h("p", { class: "notice", hidden: true });
  const stats = h(
    "div",
    { class: "stats" },
    stat("Queued", depth, "Syncs waiting, scheduled retries included"),
    stat("Oldest queued", oldest, "How long the oldest queued sync has waited"),
    stat("Running", running, "Syncs a worker holds"),
  );
  // The numbers open the page; the chart and the workers close it.
  const summary = h(
    "section",
    { class: "health", "aria-labelledby": "health-title" },
    h("div", { class: "section-head" }, h("h2", { id: "health-title" }, "Queue"), updated),
    notice,
    stats,
  );
  const details = h(
    "section",
    { class: "section", "aria-labelledby": "fleet-title" },
    h("h2", { id: "fleet-title" }, "Throughput and workers"),
    h("div", { class: "chart-panel" }, h("h3", null, "Syncs finished per minute, last hour"), chartBox, legend),
    dataTable(
      { "data-testid": "workers-table", "aria-label": "Workers" },
      ["Worker", "Host", "PID", "Version", "Busy", "Current syncs", "Started", "Last seen"],
      workersBody,
    ),
  );

  let failing = false;

  function worker(w) {
    // Workers beat every 10 s; one silent for longer than two beats may be gone.
    const stale = w.last_seen_at && between(w.last_seen_at) > 25000;
    return h(
      "tr",
      { "data-testid": "worker-row", "data-worker": w.name, class: stale ? "stale" : null },
      h("th", { scope: "row", class: "mono" }, w.name),
      h("td", { class: "mono" }, orDash(w.hostname)),
      h("td", { class: "num" }, num(w.pid)),
      h("td", { class: "mono" }, orDash(w.version)),
      h("td", { class: "num" }, `${(w.current_syncs || []).length} / ${num(w.concurrency)}`),
      h(
        "td",
        null,
        (w.current_syncs || []).length
          ? h(
              "ul",
              { class: "inline-list" },
              w.current_syncs.map((cs) =>
                h("li", null, h("a", { href: `#/ops/syncs/${cs.id}`, class: "mono", title: cs.id }, shortId(cs.id)), cs.current_phase ? ` ${cs.current_phase}` : ""),
              ),
            )
          : h("span", { class: "muted" }, "idle"),
      ),
      h("td", null, time(w.started_at)),
      h("td", null, time(w.last_seen_at), stale ? h("span", { class: "tag tag-error" }, "stale") : null),
    );
  }

  async function refresh() {
    try {
      const q = await api.get("/ops/queue");
      if (!ctx.alive()) return false;
      failing = false;
      depth.textContent = num(q.depth);
      running.textContent = num(q.running);
      oldest.textContent =
        q.oldest_queued_age_seconds === null || q.oldest_queued_age_seconds === undefined
          ? "—"
          : duration(q.oldest_queued_age_seconds * 1000);
      const workers = q.workers || [];
      if (workers.length) fill(workersBody, workers.map(worker));
      else fill(workersBody, h("tr", null, h("td", { colspan: "8", class: "empty" }, "No worker has reported in.")));
      fill(chartBox, throughputChart(q.throughput, chartBox.clientWidth));
      fill(legend, legendFor(q.throughput));
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      return true;
    } catch (e) {
      if (!ctx.alive() || e.handled) return false;
      if (e.missing) {
        // An API without GET /ops/queue: say so once and stop asking.
        notice.textContent = "This server does not report queue health (GET /api/v1/ops/queue is missing).";
        notice.hidden = false;
        stats.hidden = true;
        details.hidden = true;
        return false;
      }
      // Report the first failure of a streak, not one every few seconds.
      if (!failing) ctx.flashError(e);
      failing = true;
      updated.textContent = "not updated: the last request failed";
      return true;
    }
  }
  poll(ctx, QUEUE_EVERY_MS, refresh);
  return { summary, details, refresh };
}

function stat(label, valueEl, hint) {
  return h("div", { class: "stat", title: hint }, h("span", { class: "stat-label" }, label), valueEl);
}

function legendFor(tp) {
  const totals = { succeeded: 0, failed: 0, cancelled: 0 };
  for (const b of (tp && tp.buckets) || []) for (const k of Object.keys(totals)) totals[k] += b[k] || 0;
  return Object.entries(totals).map(([k, n]) =>
    h("span", { class: `legend-item legend-${k}` }, h("span", { class: "swatch", "aria-hidden": "true" }), `${n} ${k}`),
  );
}

/** A round upper bound for the y axis: 1, 2, 5, 10, 20, 50, ... */
function niceMax(n) {
  if (n <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (n <= m * p) return m * p;
  return 10 * p;
}

/**
 * Stacked bars (succeeded, failed, cancelled) of syncs finished per minute
 * over the last hour, drawn by hand in SVG; each bar's `<title>` gives its
 * minute and counts.
 */
export function throughputChart(tp, width = 720) {
  // One SVG unit per CSS pixel, so that the labels keep their size on any screen.
  const W = Math.max(300, Math.round(width));
  const H = 180;
  const pad = { left: 34, right: 8, top: 10, bottom: 24 };
  const plotW = W - pad.left - pad.right;
  const plotH = H - pad.top - pad.bottom;
  const buckets = (tp && tp.buckets) || [];
  const totals = buckets.map((b) => (b.succeeded || 0) + (b.failed || 0) + (b.cancelled || 0));
  const max = niceMax(Math.max(0, ...totals));
  const slot = plotW / Math.max(buckets.length, 60);
  const y = (v) => pad.top + plotH - (v / max) * plotH;
  const sum = totals.reduce((a, b) => a + b, 0);

  const ticks = [0, max / 2, max].filter(Number.isInteger);
  const grid = ticks.map((v) =>
    s(
      "g",
      { class: "grid" },
      s("line", { x1: pad.left, x2: W - pad.right, y1: y(v), y2: y(v) }),
      s("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)),
    ),
  );
  const fmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const bars = buckets.map((b, i) => {
    const x = pad.left + i * slot + 0.5;
    const w = Math.max(1, slot - 1.5);
    let top = y(0);
    const parts = [];
    for (const k of ["succeeded", "failed", "cancelled"]) {
      const n = b[k] || 0;
      if (!n) continue;
      const hgt = (n / max) * plotH;
      top -= hgt;
      parts.push(s("rect", { class: `bar bar-${k}`, x, y: top, width: w, height: hgt }));
    }
    const label = `${fmt.format(new Date(b.start))}: ${b.succeeded || 0} succeeded, ${b.failed || 0} failed, ${b.cancelled || 0} cancelled`;
    // A transparent full-height target so that the tooltip shows over empty minutes too.
    return s("g", { class: "bucket" }, s("title", null, label), s("rect", { class: "hit", x, y: pad.top, width: w, height: plotH }), parts);
  });
  const axis = [
    [pad.left, "start", "−60 min"],
    [pad.left + plotW / 2, "middle", "−30 min"],
    [W - pad.right, "end", "now"],
  ].map(([x, anchor, t]) => s("text", { class: "axis", x, y: H - 6, "text-anchor": anchor }, t));

  const description = tp
    ? `${sum} syncs finished in the last hour; at most ${Math.max(0, ...totals)} in one minute.`
    : "No data yet.";
  return s(
    "svg",
    {
      class: "chart",
      "data-testid": "throughput-chart",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `Syncs finished per minute over the last hour. ${description}`,
    },
    grid,
    bars,
    s("line", { class: "baseline", x1: pad.left, x2: W - pad.right, y1: y(0), y2: y(0) }),
    axis,
    tp && sum === 0 ? s("text", { class: "empty-chart", x: pad.left + plotW / 2, y: pad.top + plotH / 2, "text-anchor": "middle" }, "No sync finished in the last hour") : null,
  );
}

// ------------------------------------------------------------- sync detail

export async function syncView(ctx, id) {
  document.title = `Sync ${shortId(id)} · projsync`;
  const title = h("h1", { tabindex: "-1" }, "Sync ", h("span", { class: "mono" }, shortId(id)));
  const head = h("div", { class: "page-head" }, title);
  const article = h("article", { class: "sync-detail", "data-testid": "sync-detail" });
  const actions = {
    retry: h("button", { type: "button", class: "button primary", "data-testid": "action-retry" }, "Retry from the failed phase"),
    retryStart: h("button", { type: "button", class: "button", "data-testid": "action-retry-start" }, "Retry from the start"),
    cancel: h("button", { type: "button", class: "button danger-outline", "data-testid": "action-cancel" }, "Cancel"),
    discard: h("button", { type: "button", class: "button danger", "data-testid": "action-discard" }, "Discard"),
  };
  fill(
    ctx.main,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/ops" }, "Operations"), " / "),
    head,
    h("div", { class: "toolbar actions-bar", role: "group", "aria-label": "Actions" }, Object.values(actions)),
    article,
  );

  let sync = null;
  let projectName = null;

  function draw() {
    article.dataset.status = sync.status;
    fill(
      head,
      title,
      badge(sync.status),
      h("span", { class: "muted" }, `${sync.kind} · ${sync.branch}`),
    );
    title.replaceChildren("Sync ", h("span", { class: "mono", title: sync.id }, shortId(sync.id)));
    const active = sync.status === "queued" || sync.status === "running";
    const ended = sync.status === "failed" || sync.status === "cancelled";
    // Enabled by state as a hint; the API has the last word (and says why).
    const hint = (button, fits, when) => {
      button.classList.toggle("inactive", !fits);
      button.title = fits ? "" : `Only for a sync that is ${when}; this one is ${sync.status}.`;
    };
    hint(actions.retry, ended, "failed or cancelled");
    hint(actions.retryStart, ended, "failed or cancelled");
    hint(actions.discard, ended, "failed or cancelled");
    hint(actions.cancel, active, "queued or running");

    const st = sync.stats || {};
    const skipped = Object.entries(st.skipped_by_reason || {}).map(([k, n]) => `${k} ${n}`).join(", ");
    const p = sync.progress;
    fill(
      article,
      h(
        "section",
        {
          class: `problem problem-${sync.status}`,
          "aria-labelledby": "problem-title",
          // Nothing to say for a sync without error or advice (the fields stay, empty).
          hidden: !(sync.error_class || sync.error_message || sync.advice),
        },
        h("h2", { id: "problem-title" }, "Error and advice"),
        facts(
          [
          ["Error class", orDash(sync.error_class), { "data-testid": "error-class" }],
          ["Error", orDash(sync.error_message), { "data-testid": "error-message", class: "prewrap" }],
          ["Failed phase", orDash(sync.failed_phase)],
          // `advice` is undefined on an API that does not give it yet.
          ["Advice", orDash(sync.advice), { "data-testid": "advice", class: "prewrap" }],
          ],
          { class: "facts facts-rows" },
        ),
      ),
      h("h2", null, "Sync"),
      facts([
        ["Project", h("a", { href: `#/projects/${sync.project_id}` }, projectName || shortId(sync.project_id))],
        ["Id", h("span", { class: "mono" }, sync.id)],
        ["Kind", sync.restore_of_sync_id ? ["restore of ", h("a", { href: `#/ops/syncs/${sync.restore_of_sync_id}`, class: "mono" }, shortId(sync.restore_of_sync_id))] : sync.kind],
        ["Trigger", orDash(sync.trigger), { "data-testid": "sync-trigger", class: "mono" }],
        ["Outcome", orDash(sync.outcome)],
        ["Head commit", h("span", { class: "mono", title: sync.head_commit || "" }, shortSha(sync.head_commit))],
        ["Current phase", orDash(sync.current_phase)],
        ["Attempts", num(sync.attempts)],
        ["Operator retries", num(sync.retries)],
        ["Lease owner", orDash(sync.lease_owner), { "data-testid": "lease-owner", class: "mono" }],
        ["Lease expires", time(sync.lease_expires_at)],
        ["Fence", num(sync.fence)],
        ["Created", time(sync.created_at)],
        ["Started", time(sync.started_at)],
        ["Finished", time(sync.finished_at)],
        ["Took", sync.started_at ? duration(between(sync.started_at, sync.finished_at)) : "—"],
        sync.not_before ? ["Not before", time(sync.not_before)] : null,
        ["Last pushed", time(sync.last_pushed_at)],
        sync.cancel_requested_at ? ["Cancel requested", time(sync.cancel_requested_at)] : null,
        ["Previous sync", sync.previous_sync_id ? h("a", { href: `#/ops/syncs/${sync.previous_sync_id}`, class: "mono" }, shortId(sync.previous_sync_id)) : "—"],
        Object.keys(sync.options || {}).length ? ["Options", h("code", null, JSON.stringify(sync.options))] : null,
      ]),
      h("h2", null, "Counts"),
      facts([
        ["Files seen", num(st.files_seen)],
        ["Added", num(st.added)],
        ["Modified", num(st.modified)],
        ["Deleted", num(st.deleted)],
        ["Renamed", num(st.renamed)],
        ["Unchanged", num(st.unchanged)],
        ["Type changed", num(st.type_changed)],
        ["Imported", num(st.imported)],
        ["Skipped", skipped ? `${num(st.skipped)} (${skipped})` : num(st.skipped)],
        ["Chunks", num(st.chunks)],
        ["Embedded", num(st.embedded)],
        ["From the embedding cache", num(st.embedding_cache_hits)],
      ]),
      h("h2", null, "Steps"),
      stepsTable(sync),
      h("h2", null, "Latest event"),
      p
        ? facts([
            ["Event", `#${p.seq} · ${p.phase} ${p.phase_status} · ${p.done} / ${p.total}`],
            ["Message", p.message, { class: "prewrap" }],
            ["At", time(p.at)],
          ])
        : h("p", { class: "muted" }, "No event yet."),
    );
  }

  let drawn = "";

  /** Load and draw the sync (only when it changed: a redraw loses the focus); true while it is active. */
  async function load() {
    try {
      const r = await api.get(`/syncs/${enc(id)}`);
      if (!ctx.alive()) return false;
      sync = r;
      const text = JSON.stringify([r, projectName]);
      if (text !== drawn) {
        drawn = text;
        draw();
      }
      return !isTerminal(sync.status);
    } catch (e) {
      if (!ctx.alive()) return false;
      ctx.flashError(e);
      if (e.status === 404 && !e.missing) {
        fill(article, h("p", null, "No such sync. ", h("a", { href: "#/ops" }, "Back to operations"), "."));
        for (const b of Object.values(actions)) b.disabled = true;
      }
      return false;
    }
  }

  // While the sync is queued or running, follow it: its phases move on
  // their own. A sync that has ended is loaded once (and after an action).
  let following = false;
  function follow() {
    if (following) return;
    following = true;
    poll(ctx, DETAIL_EVERY_MS, async () => {
      const active = await load();
      if (!active) following = false;
      return active;
    }, { later: true });
  }

  async function act(button, path, body, done) {
    button.disabled = true;
    try {
      const r = await api.post(`/syncs/${enc(id)}/${path}`, body);
      if (!ctx.alive()) return;
      ctx.flash("info", done(r));
    } catch (e) {
      ctx.flashError(e);
    } finally {
      button.disabled = false;
    }
    if (ctx.alive() && (await load())) follow();
  }
  actions.retry.addEventListener("click", () =>
    act(actions.retry, "retry", { from_start: false }, (r) => `Sync ${shortId(r.id)} queued again; it resumes at its failed phase.`),
  );
  actions.retryStart.addEventListener("click", () =>
    act(actions.retryStart, "retry", { from_start: true }, (r) => `Sync ${shortId(r.id)} queued again; it starts over.`),
  );
  actions.cancel.addEventListener("click", () =>
    act(actions.cancel, "cancel", undefined, (r) =>
      r.outcome === "cancelled" ? "The sync was cancelled before it started." : "Cancel requested: the sync stops at its next batch boundary.",
    ),
  );
  actions.discard.addEventListener("click", () =>
    act(actions.discard, "discard", undefined, () => "The sync was discarded: its pending versions are gone; the knowledge base is unchanged."),
  );

  if (await load()) follow();
  // The project's name, for the link (the API gives its id).
  try {
    const names = await projectNames();
    projectName = (sync && names.get(sync.project_id)) || null;
    if (ctx.alive() && sync && projectName) {
      drawn = JSON.stringify([sync, projectName]);
      draw();
    }
  } catch {
    // An id is shown instead.
  }
}

function stepsTable(sync) {
  const steps = sync.steps || [];
  const byPhase = new Map(steps.map((st) => [st.phase, st]));
  // Every phase in order; a backfill has no step before embed.
  const phases = PHASES.filter((p) => byPhase.has(p));
  const row = (p) => {
    const st = byPhase.get(p);
    const cp = st.checkpoint === null || st.checkpoint === undefined ? null : json(st.checkpoint);
    return h(
      "tr",
      { "data-testid": "step-row", "data-phase": p, "data-status": st.status },
      h("th", { scope: "row" }, p),
      h("td", null, badge(st.status)),
      h("td", { class: "num" }, num(st.attempts)),
      h("td", { class: st.error_message ? "prewrap error-text" : "muted" }, orDash(st.error_message)),
      h("td", null, time(st.started_at)),
      h("td", null, time(st.finished_at)),
      h("td", { class: "num" }, st.started_at ? duration(between(st.started_at, st.finished_at)) : "—"),
      h("td", { class: "checkpoint" }, cp ? h("pre", { class: "json", tabindex: "0" }, cp) : "—"),
    );
  };
  return dataTable(
    { class: "data steps" },
    ["Phase", "Status", "Attempts", "Error", "Started", "Finished", "Took", "Checkpoint"],
    h(
      "tbody",
      null,
      phases.length ? phases.map(row) : h("tr", null, h("td", { colspan: "8", class: "empty" }, "No steps recorded.")),
    ),
  );
}
