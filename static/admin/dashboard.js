// The dashboard page: one WebSocket (/admin/ws) feeds a Store; each push
// re-renders the panels. Actions are POSTs with the session's CSRF token.
// The confirmation dialog is never touched by a re-render: it stays open,
// with its count, across live pushes (only its note says what changed).

import { TimeChart } from "./chart.js";
import { chip, h, stat, table } from "./dom.js";
import { EventsPane } from "./events.js";
import * as fmt from "./format.js";
import { Store, WINDOW_SECONDS } from "./store.js";

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
const CSRF = meta("csrf-token");
const OPERATOR = meta("keel-role") === "operator";
const THIS_INSTANCE = meta("keel-instance");
const COLORS = ["#2f6fde", "#e07b16", "#1a9e77", "#c2418b", "#7a5cd6", "#b8a216", "#d64541", "#3a9fbf"];
const MAX_ROUTES = COLORS.length;

const store = new Store();
const $ = (id) => document.getElementById(id);
const events = new EventsPane($("events"), $("events-status"));

// --- the server ------------------------------------------------------------

class SessionEnded extends Error {}

async function request(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? { "X-CSRF-Token": CSRF } : { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 401) {
    location.assign("/admin/login");
    throw new SessionEnded("session ended");
  }
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(payload?.error?.message ?? `${response.status} ${response.statusText}`);
  return payload;
}

function connect(attempt = 0) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/admin/ws`);
  setLive("connecting");
  socket.addEventListener("open", () => {
    attempt = 0;
  });
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    if (frame.op === "state") {
      store.apply(frame.data);
      document.body.dataset.pushes = String(Number(document.body.dataset.pushes ?? 0) + 1);
      setLive("live");
      render();
    }
  });
  socket.addEventListener("close", async (event) => {
    if (event.code === 1008) {
      location.assign("/admin/login"); // the session ended (logout anywhere, or expiry)
      return;
    }
    setLive("reconnecting");
    // A refused handshake looks like any other drop: ask whether we are still logged in.
    try {
      await request("GET", "/admin/api/state");
    } catch (error) {
      if (error instanceof SessionEnded) return;
    }
    const delay = Math.min(15, 2 ** attempt) * 1000;
    setTimeout(() => connect(attempt + 1), delay);
  });
}

function setLive(state) {
  $("live").dataset.state = state;
  $("live-text").textContent = state;
}

// --- rendering ----------------------------------------------------------------

const charts = {};
let routeColors = new Map();

function setupCharts() {
  const host = $("charts");
  charts.rate = new TimeChart(host, { label: "Requests / s", format: (v) => fmt.compact(v) });
  charts.errors = new TimeChart(host, { label: "5xx errors / s", format: (v) => fmt.compact(v) });
  charts.p50 = new TimeChart(host, { label: "Latency p50", format: (v) => fmt.ms(v) });
  charts.p99 = new TimeChart(host, { label: "Latency p99", format: (v) => fmt.ms(v) });
  $("instance-filter").addEventListener("change", () => render());
}

function render() {
  const state = store.state;
  if (!state) return;
  renderSummary(state);
  renderBanners(state);
  renderKpis();
  renderInstanceFilter(state);
  renderCharts();
  renderInstances(state);
  renderCache();
  renderRatelimit();
  renderBreakers(state);
  renderQueue();
  renderShards();
  renderWebsocket();
  startEvents(state);
  watchDialog();
  refreshDeadIfChanged();
}

function instanceLabel(id) {
  return id === THIS_INSTANCE ? `${id} (this page)` : id;
}

function renderSummary(state) {
  const all = state.instances;
  const stale = all.filter((i) => i.stale).length;
  const ready = all.filter((i) => !i.stale && i.ready).length;
  const text = [`${all.length} instance${all.length === 1 ? "" : "s"}`, `${ready} ready`];
  if (stale) text.push(`${stale} not reporting`);
  if (!state.fleet.shared) text.push("this instance only (no Redis)");
  else if (state.fleet.error) text.push("Redis unreachable: others not shown");
  $("fleet-summary").textContent = text.join(" · ");
}

function where(instances, total) {
  if (total > 1 && instances.length === total) return `on all ${total} instances`;
  return instances.length > 3 ? `on ${instances.length} instances` : `on ${instances.join(", ")}`;
}

function renderBanners(state) {
  const now = state.generated_at;
  const live = state.instances.filter((i) => !i.stale).length;
  const banners = state.degraded.map((d) =>
    h(
      "div",
      { class: "banner", role: "alert" },
      h("strong", {}, d.name),
      h("span", {}, ` ${d.detail}`),
      h("span", { class: "banner-since" }, ` · since ${fmt.clock(d.since)} (${fmt.duration(now - d.since)})`),
      h("span", { class: "banner-where" }, ` · ${where(d.instances, live)}`),
    ),
  );
  for (const instance of state.instances.filter((i) => i.stale)) {
    banners.push(
      h(
        "div",
        { class: "banner banner-stale", role: "alert" },
        h("strong", {}, instance.id),
        h("span", {}, ` stopped reporting ${fmt.ago(instance.last_seen, now)}; dropped after ${fmt.duration(state.fleet.drop_after)}`),
      ),
    );
  }
  $("banners").replaceChildren(...banners);
}

function plugins(pick) {
  return [...store.instances.values()].filter((i) => !i.stale).map((i) => pick(i.plugins ?? {})).filter((v) => v !== undefined && v !== null);
}

/** A plugin's state as this page's instance reports it (the queue's depth and dead count
 * are the queue's, not the instance's: every instance reads the same numbers). */
function own(pick) {
  const mine = store.instances.get(THIS_INSTANCE);
  const value = mine ? pick(mine.plugins ?? {}) : undefined;
  return value ?? plugins(pick)[0] ?? null;
}

function renderKpis() {
  const traffic = store.recentTraffic(10);
  const inFlight = [...store.instances.values()].filter((i) => !i.stale).reduce((n, i) => n + (i.in_flight ?? 0), 0);
  const hits = store.sumRate((r) => r.cache?.hit);
  const misses = store.sumRate((r) => r.cache?.miss);
  const lookups = (hits ?? 0) + (misses ?? 0);
  const cumulative = plugins((p) => p.cache?.hit_ratio);
  const hitRatio = lookups > 0 ? hits / lookups : cumulative.length ? cumulative[0] : null;
  const depth = own((p) => p.queue?.depth);
  const dead = own((p) => p.queue?.dead);
  const sockets = plugins((p) => p.websocket?.connections).reduce((a, b) => a + b, 0);
  const slowest = traffic.slowest;
  $("kpis").replaceChildren(
    stat("requests / s", fmt.compact(traffic.rate), "last 10 s"),
    stat("5xx / s", fmt.compact(traffic.errors), fmt.percent(traffic.errorRatio) + " of requests", traffic.errors > 0 ? "bad" : null),
    stat("slowest p99", fmt.ms(slowest?.p99), slowest?.route ?? "no requests", slowest && slowest.p99 > 1000 ? "warn" : null),
    stat("in flight", fmt.count(inFlight)),
    stat("cache hit ratio", fmt.percent(hitRatio), lookups > 0 ? `${fmt.rate(lookups)} lookups` : "since start"),
    stat("queue depth", fmt.count(depth), "jobs waiting"),
    stat("dead jobs", fmt.count(dead), "requeue or purge below", dead > 0 ? "warn" : null),
    stat("websockets", fmt.count(sockets), "open connections"),
  );
}

function renderInstanceFilter(state) {
  const select = $("instance-filter");
  const wanted = state.instances.map((i) => i.id);
  const have = [...select.options].slice(1).map((o) => o.value);
  if (wanted.join() === have.join()) return;
  const chosen = select.value;
  select.replaceChildren(h("option", { value: "" }, "All instances"), ...wanted.map((id) => h("option", { value: id }, instanceLabel(id))));
  select.value = wanted.includes(chosen) ? chosen : "";
}

function renderCharts() {
  const { times, routes } = store.routeSeries($("instance-filter").value);
  const shown = routes.slice(0, MAX_ROUTES);
  // A route keeps its colour while it stays in the top routes.
  const next = new Map();
  const free = COLORS.filter((c) => ![...routeColors.entries()].some(([name, color]) => color === c && shown.some((r) => r.name === name)));
  for (const route of shown) next.set(route.name, routeColors.get(route.name) ?? free.shift() ?? COLORS[0]);
  routeColors = next;
  // The last 15 minutes; a young fleet's charts span what there is (a minute at least).
  const t1 = store.newest();
  const t0 = Math.max(t1 - WINDOW_SECONDS, Math.min(times[0] ?? t1, t1 - 60));
  const series = (key, skipLongLived) =>
    shown.filter((r) => !(skipLongLived && r.longLived)).map((r) => ({ name: r.name, color: routeColors.get(r.name), values: r.values[key] }));
  charts.rate.update({ t0, t1, series: series("rate") });
  charts.errors.update({ t0, t1, series: series("errors") });
  charts.p50.update({ t0, t1, series: series("p50", true) });
  charts.p99.update({ t0, t1, series: series("p99", true) });
  const legend = shown.map((r) =>
    h(
      "li",
      {},
      h("span", { class: "swatch", dataset: { color: routeColors.get(r.name) } }),
      h("span", { class: "legend-name" }, r.name),
      h("span", { class: "legend-total" }, `${fmt.compact(r.total)} req${r.longLived ? " · latency not charted (long-lived)" : ""}`),
    ),
  );
  if (routes.length > shown.length) legend.push(h("li", { class: "muted" }, `+ ${routes.length - shown.length} quieter routes`));
  $("legend").replaceChildren(...legend);
  for (const swatch of $("legend").querySelectorAll(".swatch")) swatch.style.background = swatch.dataset.color;
}

function statusChip(instance) {
  if (instance.stale) return chip("not reporting", "bad", `last report ${fmt.clock(instance.last_seen)}`);
  if (instance.phase === "draining") return chip("draining", "info");
  if (instance.phase !== "running") return chip(instance.phase, "info");
  if (instance.status === "degraded") return chip("degraded", "warn");
  return instance.ready ? chip("ready", "ok") : chip(instance.status, "bad");
}

function renderInstances(state) {
  const rows = state.instances.map((i) => {
    const traffic = store.recentTraffic(10, i.id);
    return [
      h("td", { class: "mono" }, i.id, i.id === THIS_INSTANCE ? h("span", { class: "muted small this-page" }, " this page") : null),
      i.host,
      h("td", { class: "num" }, String(i.pid)),
      i.version,
      h("td", { class: "num" }, fmt.duration(i.uptime)),
      h("td", {}, statusChip(i), i.role === "worker" ? chip("worker", "info") : null),
      h("td", { class: "num" }, fmt.count(i.in_flight)),
      h("td", { class: "num" }, fmt.rate(traffic.rate)),
      h("td", { class: "num" }, fmt.ago(i.last_seen, state.generated_at)),
    ];
  });
  table($("instances"), ["Instance", "Host", "PID", "Version", "Uptime", "Status", "In flight", "Requests", "Reported"], rows);
}

function bar(parts) {
  const total = parts.reduce((n, p) => n + (p.value ?? 0), 0);
  const node = h("div", { class: "bar", role: "img", "aria-label": parts.map((p) => `${p.label} ${fmt.compact(p.value)}`).join(", ") });
  for (const p of parts) {
    if (!total || !p.value) continue;
    const part = h("span", { class: `bar-part tone-${p.tone}`, title: `${p.label}: ${fmt.compact(p.value)}` });
    part.style.width = `${(p.value / total) * 100}%`;
    node.appendChild(part);
  }
  return node;
}

function renderCache() {
  const states = plugins((p) => p.cache);
  if (!states.length) {
    $("cache").replaceChildren(h("p", { class: "muted" }, "The cache plugin is not enabled."));
    return;
  }
  const keys = ["hit", "miss", "bypass", "error"];
  const tones = { hit: "ok", miss: "info", bypass: "warn", error: "bad" };
  const perSecond = Object.fromEntries(keys.map((k) => [k, store.sumRate((r) => r.cache?.[k])]));
  const totals = Object.fromEntries(keys.map((k) => [k, states.reduce((n, s) => n + (s.lookups?.[k] ?? 0), 0)]));
  const hits = totals.hit;
  const ratio = hits + totals.miss ? hits / (hits + totals.miss) : null;
  const unusable = states.filter((s) => s.usable === false).length;
  $("cache").replaceChildren(
    h(
      "div",
      { class: "stats" },
      stat("hit ratio since start", fmt.percent(ratio), `${states[0].backend} backend`),
      stat("lookups / s", fmt.compact(keys.reduce((n, k) => n + (perSecond[k] ?? 0), 0))),
      stat("bypassed", unusable ? `${unusable} instance${unusable > 1 ? "s" : ""}` : "none", unusable ? "reads go to the shards" : "cache usable", unusable ? "warn" : null),
    ),
    bar(keys.map((k) => ({ label: k, value: perSecond[k] ?? 0, tone: tones[k] }))),
    h("ul", { class: "breakdown" }, keys.map((k) => h("li", {}, h("span", { class: `dot tone-${tones[k]}` }), `${k} `, h("strong", {}, fmt.rate(perSecond[k])), h("span", { class: "muted" }, ` · ${fmt.count(totals[k])} total`)))),
  );
}

function renderRatelimit() {
  const states = plugins((p) => p.ratelimit);
  if (!states.length) {
    $("ratelimit").replaceChildren(h("p", { class: "muted" }, "The ratelimit plugin is not enabled."));
    return;
  }
  const keys = ["allowed", "limited", "degraded"];
  const tones = { allowed: "ok", limited: "bad", degraded: "warn" };
  const perSecond = Object.fromEntries(keys.map((k) => [k, store.sumRate((r) => r.ratelimit?.[k])]));
  const totals = Object.fromEntries(keys.map((k) => [k, states.reduce((n, s) => n + (s.decisions?.[k] ?? 0), 0)]));
  const recent = states.flatMap((s) => s.recent_limited ?? []).slice(-6).reverse();
  const degraded = states.filter((s) => s.degraded).length;
  $("ratelimit").replaceChildren(
    h(
      "div",
      { class: "stats" },
      stat("default limit", states[0].default, `key: ${states[0].key} · ${states[0].backend}`),
      stat("limited / s", fmt.compact(perSecond.limited ?? 0), `${fmt.count(totals.limited)} since start`, perSecond.limited > 0 ? "warn" : null),
      stat("fallback", degraded ? `${degraded} instance${degraded > 1 ? "s" : ""}` : "none", degraded ? "counting in-process" : "exact across instances", degraded ? "warn" : null),
    ),
    bar(keys.map((k) => ({ label: k, value: perSecond[k] ?? 0, tone: tones[k] }))),
    h("ul", { class: "breakdown" }, keys.map((k) => h("li", {}, h("span", { class: `dot tone-${tones[k]}` }), `${k} `, h("strong", {}, fmt.rate(perSecond[k])), h("span", { class: "muted" }, ` · ${fmt.count(totals[k])} total`)))),
    ...(recent.length
      ? [h("p", { class: "muted small" }, "Recently limited: ", recent.map((r) => `${r.key ?? "?"} (${r.policy ?? ""})`).join(", "))]
      : []),
  );
}

const BREAKER_TONES = { closed: "ok", half_open: "warn", open: "bad", forced_open: "bad", disabled: "info" };

function renderBreakers(state) {
  const byName = new Map();
  for (const instance of state.instances) {
    for (const b of instance.plugins?.breakers?.breakers ?? []) {
      if (!byName.has(b.name)) byName.set(b.name, []);
      byName.get(b.name).push({ instance, b });
    }
  }
  const rows = [...byName.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, seen]) =>
    h(
      "tr",
      {},
      h("th", { scope: "row", class: "mono" }, name),
      h(
        "td",
        {},
        h(
          "div",
          { class: "chips" },
          seen.map(({ instance, b }) =>
            chip(
              `${b.state.replace("_", " ")}${state.instances.length > 1 ? ` · ${shortId(instance.id)}` : ""}`,
              instance.stale ? "muted" : BREAKER_TONES[b.state] ?? "info",
              `${instance.id}: ${b.calls} calls, ${b.failure_rate}% failed, ${b.slow_call_rate}% slow${b.retry_after ? `, retry in ${b.retry_after} s` : ""}`,
            ),
          ),
        ),
      ),
      h("td", { class: "num" }, `${Math.max(...seen.map(({ b }) => b.failure_rate))} %`),
      h("td", { class: "num" }, `${Math.max(...seen.map(({ b }) => b.slow_call_rate))} %`),
      h(
        "td",
        { class: "buttons" },
        breakerButton(name, "reset", "Reset"),
        breakerButton(name, "force_open", "Force open", true),
        breakerButton(name, "disable", "Disable", true),
      ),
    ),
  );
  table($("breakers"), ["Breaker", "State per instance", "Failures", "Slow", "Actions"], rows, "No breaker has been used yet.");
}

function shortId(id) {
  return id.length > 14 ? `…${id.slice(-10)}` : id;
}

function breakerButton(name, action, label, dangerous = false) {
  return h(
    "button",
    {
      type: "button",
      class: `button small${dangerous ? " danger" : ""}`,
      disabled: !OPERATOR,
      title: OPERATOR ? `${label} ${name} on every instance` : "read-only session",
      dataset: { breaker: name, action },
      onclick: () => breakerAction(name, action, label, dangerous),
    },
    label,
  );
}

async function breakerAction(name, action, label, dangerous) {
  const result = $("breaker-result");
  if (dangerous) {
    const what = action === "force_open" ? "refuse every call through it until reset" : "let every call through it, judging nothing, until reset";
    const ok = await confirmDialog({
      title: `${label} ${name}?`,
      text: `This applies on all ${store.instances.size} instance(s): the breaker will ${what}.`,
      confirm: label,
    });
    if (!ok) return;
  }
  result.textContent = `${label} ${name}…`;
  try {
    const r = await request("POST", `/admin/api/breakers/${encodeURIComponent(name)}/${action}`, {});
    const parts = [`${label} ${name}: acknowledged by ${r.applied.length ? r.applied.join(", ") : "no instance"}`];
    if (r.missing.length) parts.push(`no answer from ${r.missing.join(", ")}`);
    if (r.unknown.length) parts.push(`no such breaker on ${r.unknown.join(", ")}`);
    if (r.error) parts.push(r.error);
    result.textContent = parts.join(" · ");
    result.dataset.tone = r.missing.length || r.error ? "warn" : "ok";
  } catch (error) {
    result.textContent = `${label} ${name} failed: ${error.message}`;
    result.dataset.tone = "bad";
  }
  loadAudit();
}

function renderQueue() {
  const states = plugins((p) => p.queue);
  if (!states.length) {
    $("queue").replaceChildren(h("p", { class: "muted" }, "The queue plugin is not enabled."));
    return;
  }
  const first = own((p) => p.queue);
  const running = states.reduce((n, s) => n + (s.running ?? 0), 0);
  const statuses = ["queued", "running", "succeeded", "failed", "dead"];
  const tones = { queued: "info", running: "info", succeeded: "ok", failed: "warn", dead: "bad" };
  const perSecond = Object.fromEntries(statuses.map((k) => [k, store.sumRate((r) => r.jobs?.[k])]));
  const disconnected = states.filter((s) => !s.connected).length;
  $("queue").replaceChildren(
    h(
      "div",
      { class: "stats" },
      stat("depth", fmt.count(first.depth), `${first.queue} (${first.backend})`),
      stat("running", fmt.count(running), `${fmt.count(first.consumers)} consumer(s)`),
      stat("dead", fmt.count(first.dead), "below", first.dead > 0 ? "warn" : null),
      stat("outbox", fmt.count(first.outbox_backlog), "accepted, not yet published", first.outbox_backlog > 0 ? "warn" : null),
      stat("broker", disconnected ? "unreachable" : "connected", first.breaker ? `breaker ${first.breaker}` : "", disconnected ? "bad" : null),
    ),
    h("ul", { class: "breakdown" }, statuses.map((k) => h("li", {}, h("span", { class: `dot tone-${tones[k]}` }), `${k} `, h("strong", {}, fmt.rate(perSecond[k] ?? 0))))),
  );
}

// --- dead jobs ------------------------------------------------------------------

let deadJobs = [];
let deadTotal = null; // counted by the queue when the list was read (fresher than the state's)
let deadSeen = null; // the state's dead count the list was last read for
const selected = new Set();

async function loadDead() {
  try {
    const body = await request("GET", "/admin/api/jobs/dead?limit=100");
    deadJobs = body.jobs;
    // Read just before the list: a job buried in between is listed but not counted.
    deadTotal = Math.max(body.dead ?? 0, deadJobs.length);
  } catch (error) {
    if (error instanceof SessionEnded) return;
    $("dead-result").textContent = `Could not list dead jobs: ${error.message}`;
    $("dead-result").dataset.tone = "bad";
    deadJobs = [];
  }
  for (const id of [...selected]) if (!deadJobs.some((j) => j.id === id)) selected.delete(id);
  renderDead();
}

function currentDeadCount() {
  return own((p) => p.queue?.dead);
}

function refreshDeadIfChanged() {
  const dead = currentDeadCount();
  if (dead !== null && dead !== deadSeen && !refreshDeadIfChanged.pending) {
    refreshDeadIfChanged.pending = true;
    deadSeen = dead;
    loadDead().finally(() => (refreshDeadIfChanged.pending = false));
  }
}

function renderDead() {
  const rows = deadJobs.map((job) =>
    h(
      "tr",
      {},
      h(
        "td",
        {},
        h("input", {
          type: "checkbox",
          "aria-label": `select ${job.id}`,
          checked: selected.has(job.id),
          disabled: !OPERATOR,
          onchange: (event) => {
            if (event.target.checked) selected.add(job.id);
            else selected.delete(job.id);
            updateDeadButtons();
          },
        }),
      ),
      h("td", { class: "mono" }, job.id),
      h("td", { class: "mono" }, job.task),
      h("td", { class: "num" }, String(job.attempt)),
      h("td", { class: "reason" }, job.reason || "–"),
      h("td", { class: "mono args", title: JSON.stringify(job.args) }, truncate(JSON.stringify(job.args), 60)),
    ),
  );
  table($("dead-jobs"), ["", "Job", "Task", "Attempt", "Why it died", "Args"], rows, "No dead jobs.");
  updateDeadButtons();
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function updateDeadButtons() {
  for (const button of document.querySelectorAll("[data-dead]")) {
    const none = button.dataset.scope === "selected" ? selected.size === 0 : !deadJobs.length && !deadTotal;
    button.disabled = !OPERATOR || none;
    if (!OPERATOR) button.title = "read-only session";
  }
}

async function deadAction(verb, scope) {
  const all = scope === "all";
  const count = all ? deadTotal ?? deadJobs.length : selected.size;
  const stateCountAtOpen = currentDeadCount();
  const ids = all ? null : [...selected];
  const noun = `${fmt.count(count)} ${all ? "" : "selected "}dead job${count === 1 ? "" : "s"}`;
  const ok = await confirmDialog({
    title: `${verb === "purge" ? "Purge" : "Requeue"} ${noun}?`,
    text:
      verb === "purge"
        ? `They are dropped from the dead queue for good (their records stay "dead").`
        : "Each goes back to the queue with its attempts reset, and runs again.",
    confirm: verb === "purge" ? `Purge ${fmt.count(count)}` : `Requeue ${fmt.count(count)}`,
    danger: verb === "purge",
    watch: () => {
      // The state's count is read every few seconds: only a change since opening is news.
      const now = currentDeadCount();
      const changed = all && now !== null && now !== stateCountAtOpen && now !== count;
      return changed ? `The dead queue now holds ${fmt.count(now)} (${fmt.count(count)} when this opened); all of them will be ${verb}d.` : "";
    },
  });
  if (!ok) return;
  const result = $("dead-result");
  result.textContent = `${verb === "purge" ? "Purging" : "Requeueing"} ${noun}…`;
  try {
    const body = await request("POST", `/admin/api/jobs/dead/${verb}`, all ? { all: true } : { ids });
    result.textContent = `${verb === "purge" ? "Purged" : "Requeued"} ${fmt.count(body.count)} dead job${body.count === 1 ? "" : "s"}.`;
    result.dataset.tone = "ok";
    selected.clear();
  } catch (error) {
    result.textContent = `${verb} failed: ${error.message}`;
    result.dataset.tone = "bad";
  }
  await loadDead();
  loadAudit();
}

// --- the confirmation dialog ------------------------------------------------------

let dialogWatch = null;

function confirmDialog({ title, text, confirm, danger = true, watch = null }) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-note").textContent = "";
  const button = $("confirm-button");
  button.textContent = confirm;
  button.className = `button ${danger ? "danger" : "primary"}`;
  dialogWatch = watch;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        dialogWatch = null;
        resolve(dialog.returnValue === "confirm");
      },
      { once: true },
    );
  });
}

function watchDialog() {
  if (dialogWatch && $("confirm").open) $("confirm-note").textContent = dialogWatch();
}

// --- shards, websockets, audit ---------------------------------------------------

function renderShards() {
  const mine = store.instances.get(THIS_INSTANCE) ?? [...store.instances.values()][0];
  const shards = mine?.plugins?.sharding?.shards;
  if (!shards) {
    $("shards").replaceChildren(h("caption", {}, "The sharding plugin is not enabled."));
    return;
  }
  const rows = shards.map((s) => {
    let qps = 0;
    let weighted = 0;
    for (const r of store.rates.values()) {
      const x = r.shards?.[s.name];
      if (x?.qps) {
        qps += x.qps;
        if (x.latencyMs !== null) weighted += x.latencyMs * x.qps;
      }
    }
    return [
      h("td", { class: "mono", title: s.dsn }, s.name),
      h("td", {}, s.dialect),
      h("td", {}, s.healthy ? chip("healthy", "ok") : chip("down", "bad", s.error)),
      h("td", { class: "num" }, s.rows === null ? "–" : fmt.count(s.rows)),
      h("td", { class: "num" }, fmt.rate(qps)),
      h("td", { class: "num" }, qps ? fmt.ms(weighted / qps) : "–"),
    ];
  });
  table($("shards"), ["Shard", "Dialect", "Health", "Rows", "Queries", "Latency"], rows);
}

function renderWebsocket() {
  const states = plugins((p) => p.websocket);
  if (!states.length) {
    $("websocket").replaceChildren(h("p", { class: "muted" }, "The websocket plugin is not enabled."));
    return;
  }
  const sum = (k) => states.reduce((n, s) => n + (s[k] ?? 0), 0);
  const channels = new Map();
  for (const s of states) for (const [name, n] of Object.entries(s.channels ?? {})) channels.set(name, (channels.get(name) ?? 0) + n);
  const busiest = [...channels.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
  $("websocket").replaceChildren(
    h(
      "div",
      { class: "stats" },
      stat("connections", fmt.count(sum("connections"))),
      stat("in / s", fmt.compact(store.sumRate((r) => r.websocket?.in) ?? 0), `${fmt.count(sum("messages_in"))} total`),
      stat("out / s", fmt.compact(store.sumRate((r) => r.websocket?.out) ?? 0), `${fmt.count(sum("messages_out"))} total`),
      stat("slow-client closes", fmt.count(sum("slow_client_closes")), "closed with 1013", sum("slow_client_closes") ? "warn" : null),
    ),
    busiest.length
      ? h("p", { class: "muted small" }, "Busiest channels: ", busiest.map(([name, n]) => `${name} (${n})`).join(", "))
      : h("p", { class: "muted small" }, "No subscriptions."),
  );
}

function startEvents(state) {
  // Only where /ws is served: this page's instance has the websocket plugin.
  const here = state.instances.find((i) => i.id === THIS_INSTANCE);
  if (here?.plugins?.websocket) events.start();
  else $("events-status").textContent = "the websocket plugin is not enabled";
}

function when(iso) {
  const at = new Date(iso);
  const today = new Date().toDateString() === at.toDateString();
  return today ? fmt.clock(at.getTime() / 1000) : at.toLocaleString();
}

async function loadAudit() {
  try {
    const body = await request("GET", "/admin/api/audit?limit=50");
    $("audit-store").textContent = `kept on ${body.store === "shards" ? "the shards" : body.store}, newest first`;
    const rows = body.entries.map((e) => [
      h("td", { class: "when", title: e.at }, when(e.at)),
      e.role ?? "–",
      h("td", { class: "mono" }, e.session ?? "–"),
      h("td", { class: "mono" }, e.client),
      h("td", { class: "mono" }, e.action),
      h("td", { class: "mono" }, e.target ?? "–"),
      h("td", {}, e.result.startsWith("refused") || e.result.startsWith("failed") ? chip(e.result, "bad") : e.result),
    ]);
    table($("audit"), ["When", "Role", "Session", "Client", "Action", "Target", "Result"], rows, "Nothing audited yet.");
  } catch (error) {
    if (!(error instanceof SessionEnded)) $("audit-store").textContent = `(unavailable: ${error.message})`;
  }
}

// --- start -------------------------------------------------------------------------

function start() {
  setupCharts();
  for (const button of document.querySelectorAll("[data-dead]")) {
    button.addEventListener("click", () => deadAction(button.dataset.dead, button.dataset.scope));
  }
  updateDeadButtons();
  connect();
  loadDead();
  loadAudit();
  setInterval(() => {
    if (!document.hidden) loadAudit();
  }, 5000);
}

start();
