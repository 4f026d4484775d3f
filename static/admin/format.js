// Numbers and times as people read them: 1.2k req/s, 35 ms, 3 h 12 min.
// Pure functions, no DOM: tested in the browser test (tests/admin/test_browser.py).

const SI = [
  [1e9, "G"],
  [1e6, "M"],
  [1e3, "k"],
];

/** A count or rate as people read it: 0.25, 3.5, 98, 845, 1.2k, 35k, 1.4M. */
export function compact(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const sign = value < 0 ? "-" : "";
  const abs = Math.abs(value);
  for (const [size, suffix] of SI) {
    if (abs >= size * 0.9995) return sign + short(abs / size) + suffix;
  }
  if (abs === 0) return "0";
  if (abs < 0.01) return sign + "<0.01";
  return sign + short(abs, abs < 1 ? 2 : 1);
}

function short(value, decimals = 1) {
  // One decimal below 10 (two below 1), none above; no trailing zeros: 1.0 -> 1.
  const digits = value >= 10 ? 0 : decimals;
  return String(Number(value.toFixed(digits)));
}

/** Requests (or anything) per second. */
export function rate(value, unit = "/s") {
  return compact(value) + unit;
}

/** A latency given in milliseconds: 850 µs, 35 ms, 1.2 s, 2.5 min. */
export function ms(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value === 0) return "0";
  if (value < 1) return `${Math.round(value * 1000)} µs`;
  if (value < 1000) return `${short(value)} ms`;
  if (value < 60_000) return `${short(value / 1000)} s`;
  return `${short(value / 60_000)} min`;
}

/** A ratio 0..1 as a percentage: 98.7 %, 100 %, 0.3 %. */
export function percent(ratio) {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "–";
  const p = ratio * 100;
  if (p === 0 || p === 100) return `${p} %`;
  if (p < 0.1) return "<0.1 %";
  if (p > 99.9) return ">99.9 %";
  return `${p >= 10 ? p.toFixed(1) : p.toFixed(2)} %`.replace(/\.?0+ %$/, " %");
}

/** A duration in seconds: 42 s, 3 min 5 s, 2 h 12 min, 4 d 3 h. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** A clock time (local) from epoch seconds: 14:03:07. */
export function clock(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()]
    .map((n) => String(n).padStart(2, "0"))
    .join(":");
}

/** "3 min ago" from epoch seconds, relative to `now` (epoch seconds). */
export function ago(epochSeconds, now) {
  return `${duration(now - epochSeconds)} ago`;
}

/** A whole number with thousands separators: 12,345. */
export function count(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Math.round(value).toLocaleString("en-US");
}
