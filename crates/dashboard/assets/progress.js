// The live sync banner: a sync's five phases, its progress, counts, rate and
// ETA, followed over Server-Sent Events.
//
// A ProgressEvent says where the sync is (`phase`, `phase_status`,
// `sync_status`), how far the current phase got (`done` of `total`: files
// for scan and import, chunks for embed) and the running `stats`. Phases run
// in order, so one event is enough to place all five: those before the
// event's phase are done (succeeded, or skipped: a backfill runs only embed
// and finalize, an unchanged branch stops after prepare), those after it are
// waiting. Rate and ETA are not in the events: they are measured here, from
// the events' own timestamps, over the last few seconds of the phase.

import { get, post, ApiError } from "./api.js";
import { h, fill, duration, shortId, num, badge } from "./dom.js";

export const PHASES = ["prepare", "scan", "import", "analyze", "docs", "embed", "finalize"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "discarded"]);

export const isTerminal = (status) => TERMINAL.has(status);

/** A step's or an event's phase status as an indicator state. */
function stateOf(phaseStatus) {
  switch (phaseStatus) {
    case "succeeded":
    case "skipped":
      return "done";
    case "running":
      return "running";
    case "failed":
    case "cancelled": // stopped before it finished; the banner says why
      return "failed";
    default:
      return "waiting"; // pending: not started, or handed back to the queue
  }
}

/** The five indicator states after an event. */
export function phaseStates(event) {
  if (event.sync_status === "succeeded") return PHASES.map(() => "done");
  const at = PHASES.indexOf(event.phase);
  return PHASES.map((_, i) => (i < at ? "done" : i > at ? "waiting" : stateOf(event.phase_status)));
}

/** The five indicator states from a sync's steps (GET /syncs/{id}). */
export function phaseStatesFromSteps(sync) {
  if (sync.status === "succeeded") return PHASES.map(() => "done");
  const byPhase = new Map((sync.steps || []).map((st) => [st.phase, st.status]));
  return PHASES.map((p) => {
    const status = byPhase.get(p);
    if (status === undefined) {
      // A backfill has no step before embed: nothing to wait for there.
      return sync.kind === "backfill" && PHASES.indexOf(p) < PHASES.indexOf("embed") ? "done" : "waiting";
    }
    return stateOf(status);
  });
}

/**
 * Units per second of the current phase, from the events' timestamps: the
 * progress over a sliding window of the last WINDOW_MS (at least two
 * events), restarted when the phase or its total changes.
 */
export class RateMeter {
  static WINDOW_MS = 20000;

  constructor() {
    this.reset();
  }

  reset() {
    this.key = null;
    this.samples = [];
  }

  /** Take an event; returns `{rate, eta}` (units/s and ms, or null when unknown). */
  add(event) {
    const key = `${event.sync_id}/${event.phase}/${event.total}`;
    const t = Date.parse(event.at);
    if (key !== this.key || !Number.isFinite(t)) {
      this.key = key;
      this.samples = [];
    }
    const last = this.samples[this.samples.length - 1];
    if (last && event.done < last.done) this.samples = [];
    if (Number.isFinite(t)) this.samples.push({ t, done: event.done });
    const newest = this.samples[this.samples.length - 1];
    // Keep the window, but never fewer than two samples.
    while (this.samples.length > 2 && newest.t - this.samples[1].t >= RateMeter.WINDOW_MS) {
      this.samples.shift();
    }
    // No count yet (a phase starting, chunks being cut): nothing to measure.
    if (event.phase_status !== "running" || event.total === 0 || this.samples.length < 2) {
      return { rate: null, eta: null };
    }
    const first = this.samples[0];
    const seconds = (newest.t - first.t) / 1000;
    if (seconds <= 0) return { rate: null, eta: null };
    const rate = (newest.done - first.done) / seconds;
    if (!(rate > 0)) return { rate: rate === 0 ? 0 : null, eta: null };
    const left = Math.max(0, event.total - event.done);
    return { rate, eta: event.total > 0 ? (left / rate) * 1000 : null };
  }
}

/** "12.3 files/s": embed counts chunks, docs modules, the others files. */
export function formatRate(rate, phase) {
  if (rate === null || rate === undefined) return "—";
  const unit = phase === "embed" ? "chunks/s" : phase === "docs" ? "modules/s" : "files/s";
  return `${rate >= 100 ? Math.round(rate) : rate.toFixed(1)} ${unit}`;
}

/** "ETA 4 s", "ETA 2 min 5 s", or "—". */
export function formatEta(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  const secs = Math.max(1, Math.ceil(ms / 1000));
  return `ETA ${secs < 60 ? `${secs} s` : duration(secs * 1000)}`;
}

const COUNTS = ["added", "modified", "deleted", "renamed", "unchanged", "skipped"];
// Test ids spelled out, so that a search for one finds it.
const COUNT_IDS = {
  added: "count-added",
  modified: "count-modified",
  deleted: "count-deleted",
  renamed: "count-renamed",
  unchanged: "count-unchanged",
  skipped: "count-skipped",
};
const CONNECTION_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  closed: "",
};

/**
 * The banner of one sync at a time. `follow(sync)` shows a sync record and,
 * while it is queued or running, its live events; `onEnd(record)` runs once
 * the sync ends while followed (to reload the history and the project),
 * `onStatus(status)` when its status changes while followed (queued → running).
 * `onError(err)` and `onInfo(text)` report to the page's flash.
 */
export class SyncBanner {
  constructor({ onEnd = () => {}, onStatus = () => {}, onError = () => {}, onInfo = () => {} } = {}) {
    this.onEnd = onEnd;
    this.onStatus = onStatus;
    this.onError = onError;
    this.onInfo = onInfo;
    this.source = null;
    this.timer = null;
    this.checking = false;
    this.backoff = 1000;
    this.meter = new RateMeter();
    this.sync = null;
    this.build();
  }

  build() {
    this.title = h("h2", { class: "banner-title" });
    this.status = h("span");
    this.connection = h("span", { class: "connection", "aria-live": "polite" });
    this.cancelButton = h(
      "button",
      { type: "button", class: "button danger-outline", "data-testid": "cancel-button", onclick: () => this.cancel() },
      "Cancel",
    );
    this.phases = PHASES.map((p) =>
      h(
        "li",
        { class: "phase", "data-testid": "phase", "data-phase": p, "data-state": "waiting" },
        h("span", { class: "phase-icon", "aria-hidden": "true" }),
        h("span", { class: "phase-name" }, p),
        h("span", { class: "visually-hidden phase-state" }, ": waiting"),
      ),
    );
    this.bar = h("progress", { "data-testid": "progress", max: "1", value: "0" });
    this.barText = h("span", { class: "progress-text", "data-testid": "progress-text" }, "0 / 0");
    this.rate = h("span", { "data-testid": "rate" }, "—");
    this.eta = h("span", { "data-testid": "eta" }, "—");
    this.counts = Object.fromEntries(COUNTS.map((c) => [c, h("dd", { "data-testid": COUNT_IDS[c] }, "0")]));
    this.message = h("p", { class: "banner-message", "data-testid": "banner-message" });
    // What screen readers hear: status changes, not every batch.
    this.announce = h("span", { class: "visually-hidden", role: "status" });
    this.el = h(
      "section",
      {
        class: "banner",
        "data-testid": "sync-banner",
        "data-connection": "closed",
        "aria-label": "Latest sync",
        hidden: true,
      },
      h(
        "div",
        { class: "banner-head" },
        this.title,
        this.status,
        this.connection,
        h("span", { class: "spacer" }),
        this.cancelButton,
      ),
      h("ol", { class: "phases", "aria-label": "Phases" }, this.phases),
      h(
        "div",
        { class: "progress-row" },
        this.bar,
        this.barText,
        (this.rateEta = h("span", { class: "rate-eta" }, this.rate, h("span", { "aria-hidden": "true" }, " · "), this.eta)),
      ),
      h(
        "dl",
        { class: "counts" },
        COUNTS.map((c) => h("div", { class: `count count-${c}` }, h("dt", null, c), this.counts[c])),
      ),
      this.message,
      this.announce,
    );
  }

  /** Show `sync` (a SyncRecord, with or without steps) and follow it while it runs. */
  follow(sync) {
    this.stop();
    this.sync = sync;
    this.lastSeq = 0;
    this.ended = false;
    this.backoff = 1000;
    this.meter.reset();
    this.el.hidden = false;
    this.el.dataset.syncId = sync.id;
    fill(
      this.title,
      sync.kind === "restore" ? "Restore " : sync.kind === "backfill" ? "Backfill " : "Sync ",
      h("a", { href: `#/ops/syncs/${sync.id}`, title: sync.id }, shortId(sync.id)),
      h("span", { class: "muted" }, ` · ${sync.branch}`),
    );
    this.setStatus(sync.status);
    this.setPhases(sync.steps ? phaseStatesFromSteps(sync) : this.statesFromRecord(sync));
    this.showNumbers(sync.progress, sync.stats);
    this.message.textContent = sync.progress ? sync.progress.message : sync.status === "queued" ? "Waiting for a worker…" : "";
    if (isTerminal(sync.status)) {
      this.finish(sync, { notify: false });
      if (!sync.steps) this.loadRecord(sync.id); // the steps place the phases exactly
      return;
    }
    this.setConnection("connecting");
    this.open();
  }

  /** Close the stream and timers (leaving the page, or following another sync). */
  stop() {
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * A record's phases without a live event: from its snapshot while that is
   * current, else from where the ledger says it stopped. (The ledger ends a
   * sync a moment before it records the final event: a record read in
   * between is terminal with the snapshot of the last batch.)
   */
  statesFromRecord(sync) {
    const status = sync.status;
    const p = sync.progress;
    if (status === "succeeded") return PHASES.map(() => "done");
    if (p && (!isTerminal(status) || isTerminal(p.sync_status))) {
      return phaseStates({ ...p, sync_status: status });
    }
    const phase = sync.failed_phase || sync.current_phase || (p && p.phase);
    if (!phase) return PHASES.map(() => "waiting");
    const phaseStatus = isTerminal(status) ? "failed" : status === "running" ? "running" : "pending";
    return phaseStates({ phase, phase_status: phaseStatus, sync_status: status });
  }

  open() {
    const source = new EventSource(`/api/v1/syncs/${encodeURIComponent(this.sync.id)}/events`);
    this.source = source;
    source.onopen = () => {
      if (this.source === source && !this.ended) {
        this.backoff = 1000;
        this.setConnection("live");
      }
    };
    source.addEventListener("progress", (e) => {
      if (this.source !== source) return;
      let event;
      try {
        event = JSON.parse(e.data);
      } catch {
        return;
      }
      // After a reconnect without Last-Event-ID the snapshot comes again.
      if (event.seq <= this.lastSeq) return;
      this.lastSeq = event.seq;
      this.apply(event);
    });
    source.onerror = () => {
      if (this.source !== source || this.ended) return;
      // The browser retries by itself (with Last-Event-ID) unless the
      // answer was not a stream (401, 404, 503): then it gives up.
      this.setConnection("reconnecting");
      this.check();
    };
  }

  /**
   * After a stream error: ask the ledger. A sync that ended without a final
   * event (cancelled while queued) must not be waited for; a stream the
   * browser gave up on is reopened after a growing delay.
   */
  async check() {
    if (this.checking) return;
    this.checking = true;
    const id = this.sync.id;
    try {
      const sync = await get(`/syncs/${encodeURIComponent(id)}`);
      if (this.sync?.id !== id || this.ended) return;
      if (isTerminal(sync.status)) {
        this.showRecord(sync);
        this.finish(sync, { notify: true });
        // Read once more: the final event is recorded just after the end.
        setTimeout(() => this.loadRecord(id), 1500);
        return;
      }
      this.setStatus(sync.status);
    } catch (e) {
      if (e instanceof ApiError && e.handled) return this.stop();
      if (e instanceof ApiError && e.status === 404 && !e.missing) {
        this.onError(e);
        this.ended = true;
        this.stop();
        return this.setConnection("closed");
      }
      // The API itself is unreachable: keep trying, quietly.
    } finally {
      this.checking = false;
    }
    if (this.sync?.id !== id || this.ended) return;
    if (!this.source || this.source.readyState === EventSource.CLOSED) {
      this.stop();
      this.timer = setTimeout(() => {
        if (this.sync?.id === id && !this.ended) this.open();
      }, this.backoff);
      this.backoff = Math.min(this.backoff * 2, 30000);
    }
  }

  /** One progress event. */
  apply(event) {
    if (!this.ended) this.setConnection("live");
    this.setStatus(event.sync_status);
    this.setPhases(phaseStates(event));
    this.showNumbers(event, event.stats);
    const { rate, eta } = this.meter.add(event);
    this.rate.textContent = formatRate(rate, event.phase);
    this.eta.textContent = event.phase_status === "running" ? formatEta(eta) : "—";
    this.message.textContent = event.message;
    if (isTerminal(event.sync_status)) {
      this.finish({ ...this.sync, status: event.sync_status, progress: event }, { notify: true });
      // The record says more than the event: outcome, error, failed phase.
      this.loadRecord(event.sync_id);
    }
  }

  /** done / total of a phase; and the counts. */
  showNumbers(event, stats) {
    if (event) {
      let { done, total } = event;
      // "import done" and the like come as 0 / 0: keep the phase's last numbers.
      const prev = this.shown;
      if (total === 0 && event.phase_status === "succeeded" && prev && prev.phase === event.phase && prev.total > 0) {
        done = prev.total;
        total = prev.total;
      }
      this.shown = { phase: event.phase, done, total };
      this.barText.textContent = `${done} / ${total}`;
      if (total > 0) {
        this.bar.max = total;
        this.bar.value = Math.min(done, total);
      } else if (event.sync_status === "succeeded") {
        this.bar.max = 1;
        this.bar.value = 1;
      } else if (event.phase_status === "running") {
        this.bar.removeAttribute("value"); // indeterminate: the phase has no count yet
      } else {
        this.bar.max = 1;
        this.bar.value = 0;
      }
    } else {
      this.shown = null;
      this.barText.textContent = "0 / 0";
      this.bar.max = 1;
      this.bar.value = 0;
    }
    for (const c of COUNTS) {
      const n = stats ? stats[c] ?? 0 : 0;
      this.counts[c].textContent = num(n);
      this.counts[c].parentElement.classList.toggle("zero", n === 0);
    }
  }

  setStatus(status) {
    const before = this.el.dataset.status;
    this.el.dataset.status = status;
    if (before !== status) this.announce.textContent = `${this.sync?.kind || "sync"} ${status}`;
    if (before && before !== status && !isTerminal(status) && this.source) this.onStatus(status);
    const replaced = badge(status);
    this.status.replaceWith(replaced);
    this.status = replaced;
    const active = status === "queued" || status === "running";
    this.cancelButton.disabled = !active;
    // Rate and ETA mean something only while it runs.
    this.rateEta.hidden = status !== "running";
  }

  setPhases(states) {
    this.phases.forEach((li, i) => {
      li.dataset.state = states[i];
      li.title = `${PHASES[i]}: ${states[i]}`;
      li.querySelector(".phase-state").textContent = `: ${states[i]}`;
      if (states[i] === "running") li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
    });
  }

  setConnection(state) {
    this.el.dataset.connection = state;
    this.connection.textContent = CONNECTION_TEXT[state];
    this.connection.className = `connection connection-${state}`;
  }

  /** A record's numbers and message (a sync that ended without an event, or after the final one). */
  showRecord(sync) {
    this.sync = { ...this.sync, ...sync };
    this.setStatus(sync.status);
    this.setPhases(sync.steps ? phaseStatesFromSteps(sync) : this.statesFromRecord(sync));
    this.showNumbers(sync.progress, sync.stats);
    this.message.textContent = finalMessage(sync);
  }

  /** The sync ended: close the stream; notify once if it ended while followed. */
  finish(sync, { notify }) {
    const first = !this.ended;
    this.ended = true;
    this.stop();
    this.setConnection("closed");
    this.rate.textContent = "—";
    this.eta.textContent = "—";
    this.cancelButton.disabled = true;
    this.message.textContent = finalMessage(sync);
    if (notify && first) this.onEnd(sync);
  }

  async loadRecord(id) {
    try {
      const sync = await get(`/syncs/${encodeURIComponent(id)}`);
      if (this.sync?.id === id) this.showRecord(sync);
    } catch (e) {
      if (!(e instanceof ApiError && e.handled)) this.onError(e);
    }
  }

  async cancel() {
    const id = this.sync?.id;
    if (!id) return;
    this.cancelButton.disabled = true;
    try {
      const r = await post(`/syncs/${encodeURIComponent(id)}/cancel`);
      if (this.sync?.id !== id) return;
      this.onInfo(
        r.outcome === "cancelled"
          ? "The sync was cancelled before it started."
          : "Cancel requested: the sync stops at its next batch boundary; the knowledge base stays as it was.",
      );
      if (this.ended) return; // the final event came first
      if (r.outcome === "cancelled") {
        // It was queued: it ended here, and no event will come.
        this.showRecord(r.sync);
        this.finish(r.sync, { notify: true });
      }
      // Otherwise it stops at its next batch boundary, and the stream
      // brings the final event.
    } catch (e) {
      if (this.sync?.id === id && !this.ended) this.cancelButton.disabled = false;
      if (!(e instanceof ApiError && e.handled)) this.onError(e);
    }
  }
}

/** What the banner says once a sync has ended. */
export function finalMessage(sync) {
  // The snapshot's message only once it is the final event's.
  const p = sync.progress && (isTerminal(sync.progress.sync_status) || !isTerminal(sync.status)) ? sync.progress : null;
  const took = sync.started_at && sync.finished_at ? ` in ${duration(Date.parse(sync.finished_at) - Date.parse(sync.started_at))}` : "";
  switch (sync.status) {
    case "succeeded": {
      const outcome = sync.outcome ? ` (${sync.outcome})` : "";
      return `Succeeded${outcome}${took}${p && p.message ? ` — ${p.message}` : "."}`;
    }
    case "failed": {
      const where = sync.failed_phase ? ` in ${sync.failed_phase}` : p ? ` in ${p.phase}` : "";
      const why = sync.error_message || (p && p.message) || "";
      return `Failed${where}${why ? `: ${why}` : "."}`;
    }
    case "cancelled":
      return `Cancelled${p && p.message ? `: ${p.message}` : "."}`;
    case "discarded":
      return "Discarded: its pending versions were dropped; the knowledge base is unchanged.";
    default:
      return p ? p.message : sync.status === "queued" ? "Waiting for a worker…" : "";
  }
}
