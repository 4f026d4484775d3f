// What the page knows: the latest state of every instance, 15 minutes of
// per-route points per instance (merged from pushes), and rates computed
// from the counters of successive snapshots. No DOM here.

export const WINDOW_SECONDS = 900;
const LONG_LIVED = /\/ws$/; // WebSocket routes: their "latency" is the connection's life
const OWN = / \/admin/; // the dashboard's own requests

export class Store {
  constructor() {
    this.state = null;
    this.instances = new Map(); // id -> latest snapshot
    this.points = new Map(); // id -> Map(t -> {route: [rate, errors, p50, p99]})
    this.previous = new Map(); // id -> snapshot that rates are computed against
    this.rates = new Map(); // id -> rates from the last two distinct snapshots
  }

  /** Take one pushed (or fetched) state document. */
  apply(state) {
    this.state = state;
    const seen = new Set();
    for (const instance of state.instances) {
      seen.add(instance.id);
      const before = this.instances.get(instance.id);
      if (before && before.reported_at !== instance.reported_at) {
        this.previous.set(instance.id, before);
        this.rates.set(instance.id, rates(before, instance));
      }
      this.instances.set(instance.id, instance);
      this.#merge(instance.id, instance.series);
    }
    for (const id of [...this.instances.keys()]) {
      if (!seen.has(id)) {
        this.instances.delete(id);
        this.points.delete(id);
        this.previous.delete(id);
        this.rates.delete(id);
      }
    }
  }

  #merge(id, series) {
    if (!series) return;
    let known = this.points.get(id);
    if (!known) this.points.set(id, (known = new Map()));
    series.t.forEach((t, i) => {
      const routes = {};
      for (const [name, s] of Object.entries(series.routes)) {
        if (s.rate[i] > 0) routes[name] = [s.rate[i], s.errors[i], s.p50[i], s.p99[i]];
      }
      known.set(t, routes);
    });
    const newest = Math.max(...known.keys());
    for (const t of known.keys()) if (t <= newest - WINDOW_SECONDS) known.delete(t);
  }

  /** The newest second any instance has a point for. */
  newest() {
    let t = 0;
    for (const known of this.points.values()) for (const k of known.keys()) if (k > t) t = k;
    return t || Math.floor(Date.now() / 1000);
  }

  /**
   * Per-route series over the window for one instance, or all added up:
   * rate and errors are summed; p50 is the request-weighted mean of the
   * instances' p50; p99 is the worst instance's (percentiles do not add up).
   */
  routeSeries(instanceId = "") {
    const sources = instanceId ? [this.points.get(instanceId)].filter(Boolean) : [...this.points.values()];
    const byTime = new Map();
    for (const known of sources) {
      for (const [t, routes] of known) {
        let merged = byTime.get(t);
        if (!merged) byTime.set(t, (merged = {}));
        for (const [name, [n, errors, p50, p99]] of Object.entries(routes)) {
          const m = (merged[name] ??= { n: 0, errors: 0, p50sum: 0, p50n: 0, p99: null });
          m.n += n;
          m.errors += errors;
          if (p50 !== null) {
            m.p50sum += p50 * n;
            m.p50n += n;
          }
          if (p99 !== null && (m.p99 === null || p99 > m.p99)) m.p99 = p99;
        }
      }
    }
    const times = [...byTime.keys()].sort((a, b) => a - b);
    const names = new Set();
    for (const merged of byTime.values()) for (const name of Object.keys(merged)) names.add(name);
    const routes = [...names].map((name) => {
      const values = { rate: [], errors: [], p50: [], p99: [] };
      let total = 0;
      for (const t of times) {
        const m = byTime.get(t)[name];
        values.rate.push([t, m ? m.n : 0]);
        values.errors.push([t, m ? m.errors : 0]);
        values.p50.push([t, m && m.p50n ? m.p50sum / m.p50n : null]);
        values.p99.push([t, m ? m.p99 : null]);
        total += m ? m.n : 0;
      }
      return { name, total, longLived: LONG_LIVED.test(name), values };
    });
    routes.sort((a, b) => b.total - a.total || a.name.localeCompare(b.name));
    return { times, routes };
  }

  /** Requests/s, 5xx/s and the slowest route's p99 (the dashboard's own routes aside) over
   * the last `seconds` (all instances). */
  recentTraffic(seconds = 10, instanceId = "") {
    const { times, routes } = this.routeSeries(instanceId);
    const from = (times.at(-1) ?? 0) - seconds;
    let requests = 0;
    let errors = 0;
    let slowest = null;
    for (const route of routes) {
      for (let i = 0; i < times.length; i++) {
        if (times[i] <= from) continue;
        requests += route.values.rate[i][1];
        errors += route.values.errors[i][1];
        const p99 = route.values.p99[i][1];
        const counts = !route.longLived && !OWN.test(route.name);
        if (counts && p99 !== null && (!slowest || p99 > slowest.p99)) {
          slowest = { route: route.name, p99 };
        }
      }
    }
    const span = Math.max(1, Math.min(seconds, times.length));
    return { rate: requests / span, errors: errors / span, errorRatio: requests ? errors / requests : 0, slowest };
  }

  /** Sum of one computed rate over every reporting instance. */
  sumRate(pick) {
    let sum = 0;
    let any = false;
    for (const [id, r] of this.rates) {
      const instance = this.instances.get(id);
      if (!instance || instance.stale) continue;
      const value = pick(r);
      if (typeof value === "number") {
        sum += value;
        any = true;
      }
    }
    return any ? sum : null;
  }
}

/** Per-second rates between two snapshots of one instance. */
export function rates(before, after) {
  const dt = after.reported_at - before.reported_at;
  if (!(dt > 0)) return {};
  const per = (a, b) => (typeof a === "number" && typeof b === "number" ? Math.max(0, b - a) / dt : null);
  const p0 = before.plugins ?? {};
  const p1 = after.plugins ?? {};
  const out = { seconds: dt };
  if (p0.cache?.lookups && p1.cache?.lookups) {
    out.cache = {};
    for (const key of Object.keys(p1.cache.lookups)) out.cache[key] = per(p0.cache.lookups[key], p1.cache.lookups[key]);
  }
  if (p0.ratelimit?.decisions && p1.ratelimit?.decisions) {
    out.ratelimit = {};
    for (const key of Object.keys(p1.ratelimit.decisions)) {
      out.ratelimit[key] = per(p0.ratelimit.decisions[key], p1.ratelimit.decisions[key]);
    }
  }
  if (p0.websocket && p1.websocket) {
    out.websocket = {
      in: per(p0.websocket.messages_in, p1.websocket.messages_in),
      out: per(p0.websocket.messages_out, p1.websocket.messages_out),
    };
  }
  if (p0.queue?.jobs_by_status && p1.queue?.jobs_by_status) {
    out.jobs = {};
    for (const key of Object.keys(p1.queue.jobs_by_status)) {
      out.jobs[key] = per(p0.queue.jobs_by_status[key] ?? 0, p1.queue.jobs_by_status[key]);
    }
  }
  if (p0.sharding?.shards && p1.sharding?.shards) {
    out.shards = {};
    for (const shard of p1.sharding.shards) {
      const old = p0.sharding.shards.find((s) => s.name === shard.name);
      if (!old) continue;
      const queries = shard.queries - old.queries;
      out.shards[shard.name] = {
        qps: per(old.queries, shard.queries),
        latencyMs: queries > 0 ? ((shard.query_seconds - old.query_seconds) / queries) * 1000 : null,
      };
    }
  }
  return out;
}
