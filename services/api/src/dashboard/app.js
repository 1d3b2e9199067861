// The sluice dashboard: plain JavaScript over the v1 API, no build step.
// Every view is read from the API with the operator's token; the event
// feed (SSE) tells the open view to read itself again, so nothing polls
// except hydration progress, which is not an event (it would flood the log).
"use strict";

const PAGE = 50;
const TOKEN_KEY = "sluice.token";
const state = { view: null, tables: { prefix: "", after: [], next: null }, events: [], selected: null, refreshing: null };

// ---- DOM helpers: text is always set as text, never parsed as HTML.

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const badge = (s) => h("span", { class: "state " + s }, s);
const table = (heads, rows) =>
  h("table", {}, h("thead", {}, h("tr", {}, heads.map((x) => h("th", {}, x)))), h("tbody", {}, rows));
const empty = (cols, text) => h("tr", {}, h("td", { colspan: cols, class: "muted" }, text));

// ---- Time: ages tick every second from the instants the API gave.

function ago(iso) {
  if (!iso) return "";
  return span((Date.now() - Date.parse(iso)) / 1000);
}
function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.floor(s / 60) + " min";
  if (s < 172800) return Math.floor(s / 3600) + " h";
  return Math.floor(s / 86400) + " d";
}
// An element whose text is the time since (or until) an instant, kept fresh.
// How switching a live hydration's views is going, when it has not simply
// happened: pending (attempts, next try, last error) or failed (why).
function remapNote(remap) {
  if (!remap || remap.state === "done") return null;
  const head = remap.state === "pending"
    ? [`views not switched yet: ${remap.attempts} attempts`, remap.next_attempt_at ? ", next " : "",
      remap.next_attempt_at ? until(remap.next_attempt_at) : null]
    : ["views not switched: refused"];
  return h("div", { class: "error", "data-remap": remap.state }, ...head,
    remap.error ? h("div", { class: "muted" }, remap.error) : null);
}

// How old the snapshot log a lag was computed from is, and what checked it.
function logNote(log) {
  if (!log) return h("div", { class: "muted", "data-log": "" }, "log never checked");
  return h("div", { class: "muted", "data-log": log.checked_by },
    "log checked ", since(log.checked_at), " ago by ", log.checked_by.replace("_", " "));
}

function since(iso) {
  return h("span", { "data-since": iso }, ago(iso));
}
function until(iso) {
  return h("span", { "data-until": iso }, span((Date.parse(iso) - Date.now()) / 1000));
}
setInterval(() => {
  document.querySelectorAll("[data-since]").forEach((el) => (el.textContent = ago(el.dataset.since)));
  document.querySelectorAll("[data-until]").forEach((el) => {
    const left = (Date.parse(el.dataset.until) - Date.now()) / 1000;
    el.textContent = left > 0 ? "in " + span(left) : "passed";
  });
}, 1000);

// ---- The API, with the token of this tab's session.

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || "HTTP " + status);
    this.status = status;
    this.kind = body && body.error && body.error.type;
  }
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const res = await fetch(url, { headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) } });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

const enc = encodeURIComponent;

// ---- Views. Each returns the element that replaces the current one.

const views = {
  async tables() {
    const t = state.tables;
    const page = await api("/v1/tables", { limit: PAGE, prefix: t.prefix, after: t.after[t.after.length - 1] });
    t.next = page.next_after;
    const busy = page.tables.filter((x) => x.holders + x.waiters > 0);
    const leases = new Map(
      await Promise.all(busy.map(async (x) => [x.table, await api(`/v1/tables/${enc(x.table)}/leases`)])),
    );
    const rows = [];
    for (const x of page.tables) {
      rows.push(
        h("tr", { "data-table": x.table },
          h("td", {}, h("strong", {}, x.table)),
          h("td", {}, x.holders ? x.holders + " holding" : "", x.waiters ? ", " + x.waiters + " waiting" : ""),
          h("td", {}, x.last_token),
          h("td", {}, x.compaction_job || h("span", { class: "muted" }, "none")),
          h("td", {}, span(x.max_compaction_deferral_seconds)),
          h("td", {}, x.catalog || h("span", { class: "muted" }, "default")),
        ),
      );
      const l = leases.get(x.table);
      if (l) for (const lease of [...l.holders, ...l.waiters]) rows.push(leaseRow(lease, x));
    }
    const filter = h("input", { id: "table-filter", placeholder: "name prefix, e.g. sales.", size: 30 });
    // What is typed survives the re-renders events cause.
    filter.value = t.draft ?? t.prefix;
    filter.addEventListener("input", () => (t.draft = filter.value));
    filter.addEventListener("change", () => {
      t.prefix = filter.value.trim();
      t.draft = null;
      t.after = [];
      show("tables");
    });
    return h("div", {},
      h("div", { class: "toolbar" },
        h("h2", {}, "Tables"), filter,
        h("button", { disabled: t.after.length === 0, onclick: () => { t.after.pop(); show("tables"); } }, "Previous"),
        h("button", { id: "next-page", disabled: !t.next, onclick: () => { t.after.push(t.next); show("tables"); } }, "Next"),
        h("span", { class: "muted" }, `page ${t.after.length + 1}, ${page.tables.length} tables`),
      ),
      table(["Table / lease", "Leases", "Last token", "Compaction job", "Readers may pass a compaction for", "Catalog"],
        rows.length ? rows : [empty(6, "No tables match.")]),
    );
  },

  async hydrations() {
    const active = ["pending", "snapshot", "catching_up", "live", "lagging"];
    const pages = await Promise.all(active.map((s) => api("/v1/hydrations", { state: s, limit: 1000 })));
    const all = pages.flatMap((p) => p.hydrations).sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
    const rows = all.map((x) => {
      const p = x.progress || {};
      const whole = x.state === "live" || x.state === "lagging";
      const pct = p.percent === null || p.percent === undefined ? (whole ? 100 : 0) : p.percent;
      const bar = h("span", {});
      bar.style.width = pct.toFixed(1) + "%";
      return h("tr", { "data-hydration": x.id },
        h("td", {}, h("strong", {}, x.table), h("div", { class: "muted" }, "→ ", x.container, ".", x.target)),
        h("td", {}, badge(x.state)),
        h("td", {}, h("div", { class: "bar", "data-percent": pct.toFixed(1) }, bar), " ", pct.toFixed(1) + "%",
          h("div", { class: "muted" }, p.rows_total ? `${p.rows_copied ?? 0} of ${p.rows_total} rows` : "")),
        h("td", {}, x.lag ? `${x.lag.snapshots} snapshots, ${span(x.lag.seconds)}` : "",
          x.lag && x.lag.diverged ? h("div", { class: "error" }, "diverged") : null,
          logNote(x.lag && x.lag.log)),
        h("td", {}, (x.views || []).join(", "), remapNote(x.remap)),
        h("td", { "data-session": x.session ? x.session.run_id : "" },
          x.session ? [x.session.run_id, h("div", { class: "muted" }, "until ", until(x.session.expires_at))]
            : h("span", { class: "muted" }, "none")),
        // The read lease holds the table through the first hydration; after
        // it the copy keeps a pin of its own.
        h("td", { class: "muted" }, x.pin_snapshot_id !== null && x.pin_snapshot_id !== undefined
          ? ["pin ", String(x.pin_snapshot_id)] : ["lease ", x.lease_id]),
        h("td", {}, p.reported_at ? since(p.reported_at) : h("span", { class: "muted" }, "never")),
      );
    });
    return h("div", {}, h("h2", {}, "Hydrations"),
      table(["Table → target", "State", "Progress", "Lag", "Views", "Run attached", "Holds", "Last report"],
        rows.length ? rows : [empty(8, "No copy is kept.")]));
  },

  async views() {
    const page = await api("/v1/views", { limit: 1000 });
    const detail = h("div", { id: "view-history" });
    // The view picked stays picked across the re-renders events cause.
    const pick = (v) => { state.selected = v; refresh(); };
    if (state.selected) await remaps(state.selected, detail);
    const rows = page.views.map((v) =>
      h("tr", { "data-view": `${v.container}/${v.view}` },
        h("td", {}, h("a", { href: "#views", onclick: (e) => { e.preventDefault(); pick(v); } }, `${v.container}.${v.view}`)),
        h("td", {}, v.target), h("td", {}, v.columns.length ? v.columns.join(", ") : h("span", { class: "muted" }, "all")),
        h("td", {}, v.auto_remap ? "yes" : "no"), h("td", {}, v.hydration_id || ""), h("td", {}, since(v.updated_at))));
    return h("div", {}, h("h2", {}, "Consumer views"),
      table(["View", "Target", "Columns", "Auto remap", "Hydration", "Changed"], rows.length ? rows : [empty(6, "No views.")]),
      detail);
  },

  async compactions() {
    const q = await api("/v1/compactions");
    const rows = q.compactions.map((c) =>
      h("tr", { "data-compaction": c.id },
        h("td", {}, h("strong", {}, c.table)), h("td", {}, badge(c.state)), h("td", {}, c.job),
        h("td", {}, since(c.created_at)), h("td", {}, c.token ?? ""), h("td", {}, c.requested_by || ""),
        h("td", {}, c.reason || "")));
    return h("div", {}, h("h2", {}, "Compaction queue"),
      table(["Table", "State", "Job", "Waiting for", "Token", "Requested by", "Reason"],
        rows.length ? rows : [empty(7, "No compaction is queued or running.")]));
  },

  async runs() {
    const day = new Date(Date.now() - 86400000).toISOString();
    const [recent, dead] = await Promise.all([
      api("/v1/runs", { since: day, order: "newest", limit: 1000 }),
      api("/v1/runs", { state: "dead_letter", limit: 1000 }),
    ]);
    const row = (r) =>
      h("tr", { "data-run": r.id },
        h("td", {}, r.job), h("td", {}, badge(r.state)), h("td", {}, r.table || ""),
        h("td", {}, `${r.attempt} of ${r.max_attempts}`), h("td", {}, r.glue_run_id || ""),
        h("td", {}, since(r.created_at)), h("td", { class: "error" }, r.error || ""));
    const heads = ["Job", "State", "Table", "Attempt", "Glue run", "Created", "Error"];
    return h("div", {},
      h("h2", {}, "Dead-lettered runs"),
      table(heads, dead.runs.length ? dead.runs.map(row) : [empty(7, "None.")]),
      h("h3", {}, "Runs of the last 24 hours, newest first"),
      table(heads, recent.runs.length ? recent.runs.slice().reverse().map(row) : [empty(7, "None.")]));
  },

  async events() {
    const rows = state.events.slice().reverse().map(eventRow);
    return h("div", { class: "events" }, h("h2", {}, "Events, live"),
      table(["Id", "Kind", "Table / stream", "Data", "At"], rows.length ? rows : [empty(5, "Waiting for events…")]));
  },
};

function leaseRow(l, t) {
  const waiting = l.state === "waiting";
  let deadline = "";
  if (waiting && l.mode === "write") {
    // Readers stop passing a waiting compaction this long after it asked.
    const at = new Date(Date.parse(l.requested_at) + t.max_compaction_deferral_seconds * 1000).toISOString();
    deadline = h("span", {}, "readers queue behind it ", until(at));
  }
  return h("tr", { class: "lease", "data-lease": l.lease_id },
    h("td", {}, badge(l.state), " ", l.mode, " by ", h("strong", {}, l.holder), l.purpose ? h("span", { class: "muted" }, " · " + l.purpose) : null),
    h("td", {}, waiting ? h("span", {}, `#${l.position} in queue, waited `, since(l.requested_at)) : h("span", {}, "held ", since(l.granted_at))),
    h("td", {}, l.token ?? ""),
    h("td", { colspan: 2 }, deadline || h("span", {}, "expires ", until(l.expires_at))),
    h("td", { class: "muted" }, l.lease_id),
  );
}

function eventRow(e) {
  return h("tr", { "data-event": e.id },
    h("td", {}, e.id), h("td", {}, e.kind), h("td", {}, e.table || "", e.stream ? " · " + e.stream : ""),
    h("td", {}, JSON.stringify(e.data)), h("td", {}, since(e.at)));
}

async function remaps(v, into) {
  const full = await api(`/v1/views/${enc(v.container)}/${enc(v.view)}`);
  const rows = (full.history || []).map((r) =>
    h("tr", {}, h("td", {}, since(r.at)), h("td", {}, r.kind), h("td", {}, r.from || ""), h("td", {}, r.to),
      h("td", {}, r.hydration_id || ""), h("td", {}, r.actor || ""), h("td", {}, r.reason)));
  into.replaceChildren(h("h3", {}, `Remap history of ${v.container}.${v.view}`),
    table(["When", "Kind", "From", "To", "Hydration", "By", "Reason"], rows.length ? rows : [empty(7, "Never remapped.")]));
}

// ---- Navigation and refresh.

async function show(name) {
  if (!views[name]) name = "tables";
  state.view = name;
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === "#" + name));
  await refresh();
}

// One refresh at a time; a request during one runs once it ends.
async function refresh() {
  if (state.refreshing) {
    state.again = true;
    return state.refreshing;
  }
  state.refreshing = (async () => {
    do {
      state.again = false;
      const name = state.view;
      try {
        const el = await views[name]();
        if (state.view === name) {
          const focused = document.activeElement && document.activeElement.id;
          document.getElementById("view").replaceChildren(el);
          const again = focused && document.getElementById(focused);
          if (again && again.tagName === "INPUT") {
            again.focus();
            again.setSelectionRange(again.value.length, again.value.length);
          }
        }
      } catch (e) {
        if (e.status === 401) return signOut("The token was not accepted: " + e.message);
        document.getElementById("view").replaceChildren(h("p", { class: "error" }, e.message));
      }
    } while (state.again);
  })();
  await state.refreshing;
  state.refreshing = null;
}

let soon = null;
function refreshSoon() {
  if (!soon) soon = setTimeout(() => { soon = null; refresh(); }, 100);
}

// ---- The live feed: SSE read with fetch (EventSource cannot send the
// token), resumed with Last-Event-ID after a drop or a restart.

let feed = null;
async function follow() {
  const abort = new AbortController();
  feed = abort;
  let last = null;
  while (!abort.signal.aborted) {
    try {
      const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY), Accept: "text/event-stream" };
      if (last !== null) headers["Last-Event-ID"] = last;
      const res = await fetch("/v1/events/stream?tail=100", { headers, signal: abort.signal });
      if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
      setLive(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const id = received(buffer.slice(0, end));
          if (id !== null) last = id;
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      if (e.status === 401) return signOut("The token was not accepted: " + e.message);
    }
    setLive(false);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// One SSE message; its id, if it carries one.
function received(block) {
  let id = null, kind = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("id:")) id = line.slice(3).trim();
    else if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (kind === "dropped" || kind === "error" || kind === "end") return JSON.parse(data).last_event_id;
  if (!data) return id;
  const event = JSON.parse(data);
  state.events.push(event);
  if (state.events.length > 500) state.events.shift();
  refreshSoon();
  return id;
}

function setLive(on) {
  const el = document.getElementById("live");
  el.className = "live " + (on ? "on" : "off");
  el.textContent = on ? "live" : "offline";
}

// ---- Signing in: the token stays in sessionStorage (this tab only).

async function signIn(token, checked) {
  sessionStorage.setItem(TOKEN_KEY, token);
  if (!checked) {
    try {
      // The feed needs ReadEvents, which operators and admins have.
      await api("/v1/events", { limit: 1 });
    } catch (e) {
      const why =
        e.status === 403 ? "This token's role cannot use the dashboard: use an operator or admin token."
        : e.status === 401 ? "The token was not accepted: " + e.message
        : e.message;
      return signOut(why);
    }
  }
  document.getElementById("login").hidden = true;
  document.getElementById("logout").hidden = false;
  follow();
  show(location.hash.slice(1));
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (feed) feed.abort();
  setLive(false);
  document.getElementById("view").replaceChildren();
  document.getElementById("logout").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = why || "";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", (e) => {
    e.preventDefault();
    document.getElementById("login-error").textContent = "";
    signIn(document.getElementById("token").value.trim());
  });
  document.getElementById("logout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  // Progress reports are not events: while hydrations show, read them each second.
  setInterval(() => { if (state.view === "hydrations" && !document.hidden) refresh(); }, 1000);
  const token = sessionStorage.getItem(TOKEN_KEY);
  // Checked when it was stored: a refused call signs out anyway.
  if (token) signIn(token, true);
  else signOut();
});
