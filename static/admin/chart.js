// Time-series line charts in SVG: axes with round ticks, one line per series,
// a hover (and keyboard) readout. Our own small module, no dependencies.
//
//   const chart = new TimeChart(element, { label: "Requests/s", format: (v) => rate(v) });
//   chart.update({ t0, t1, series: [{ name, color, values: [[t, v], ...] }] });
//
// `values` are [epoch seconds, number or null]; a null breaks the line (no data).
// Keyboard: focus the chart, then ← → move the readout one point (with Shift:
// ten), Home / End jump to the ends, Escape hides it.

const SVG = "http://www.w3.org/2000/svg";
const MARGIN = { top: 10, right: 12, bottom: 22, left: 48 };

/** A round step near span / target: 1, 2, 2.5 or 5 times a power of ten. */
export function niceStep(span, target) {
  if (!(span > 0) || !(target > 0)) return 1;
  const raw = span / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (raw <= m * power * 1.0000001) return m * power;
  }
  return 10 * power;
}

/** Round ticks covering [min, max]; the axis starts at 0 for non-negative data. */
export function niceTicks(min, max, target = 4) {
  let lo = Math.min(0, min);
  let hi = max;
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 0;
    hi = 1;
  }
  if (hi <= lo) hi = lo + 1;
  const step = niceStep(hi - lo, target);
  const start = Math.floor(lo / step) * step;
  const end = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { min: start, max: end, ticks };
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];

/** Ticks on whole clock steps (10 s, 1 min, 5 min, …) between t0 and t1 (epoch seconds). */
export function timeTicks(t0, t1, target = 5) {
  const span = Math.max(1, t1 - t0);
  const step = TIME_STEPS.find((s) => span / s <= target) ?? TIME_STEPS[TIME_STEPS.length - 1];
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return ticks;
}

/** An SVG path through the points; a null value (or a gap in time) lifts the pen. */
export function linePath(values, x, y, maxGap = Infinity) {
  let d = "";
  let pen = false;
  let lastT = null;
  for (const [t, v] of values) {
    if (v === null || v === undefined || Number.isNaN(v)) {
      pen = false;
      continue;
    }
    if (lastT !== null && t - lastT > maxGap) pen = false;
    d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
    lastT = t;
  }
  return d;
}

/** The index in sorted `times` nearest to `t`. */
export function nearestIndex(times, t) {
  if (!times.length) return -1;
  let lo = 0;
  let hi = times.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (times[mid] <= t) lo = mid;
    else hi = mid;
  }
  return Math.abs(times[hi] - t) < Math.abs(times[lo] - t) ? hi : lo;
}

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function clockLabel(t) {
  const d = new Date(t * 1000);
  const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  return d.getSeconds() ? `${hm}:${String(d.getSeconds()).padStart(2, "0")}` : hm;
}

function fullClock(t) {
  const d = new Date(t * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()]
    .map((n) => String(n).padStart(2, "0"))
    .join(":");
}

export class TimeChart {
  constructor(host, { label, format = String, height = 170, empty = "No data yet" }) {
    this.label = label;
    this.format = format;
    this.height = height;
    this.empty = empty;
    this.data = { t0: 0, t1: 1, series: [] };
    this.cursor = null; // index into this.times while the readout shows
    this.times = [];

    this.root = document.createElement("figure");
    this.root.className = "chart";
    this.root.tabIndex = 0;
    this.root.setAttribute("aria-label", `${label}: chart; use the arrow keys to read values`);
    const caption = document.createElement("figcaption");
    caption.textContent = label;
    this.root.appendChild(caption);
    this.svg = el("svg", { class: "chart-svg", role: "presentation" }, this.root);
    this.readout = document.createElement("div");
    this.readout.className = "chart-readout";
    this.readout.hidden = true;
    this.readout.setAttribute("aria-live", "polite");
    this.root.appendChild(this.readout);
    host.appendChild(this.root);

    this.svg.addEventListener("pointermove", (e) => this.#hover(e));
    this.svg.addEventListener("pointerleave", () => this.#hide());
    this.root.addEventListener("keydown", (e) => this.#key(e));
    this.root.addEventListener("focus", () => this.#show(this.times.length - 1));
    this.root.addEventListener("blur", () => this.#hide());
    if (typeof ResizeObserver !== "undefined") {
      let width = 0;
      new ResizeObserver(() => {
        if (this.root.clientWidth !== width) {
          width = this.root.clientWidth;
          this.render();
        }
      }).observe(this.root);
    }
  }

  update(data) {
    this.data = data;
    const all = new Set();
    for (const s of data.series) for (const [t] of s.values) all.add(t);
    this.times = [...all].sort((a, b) => a - b);
    if (this.cursor !== null) this.cursor = Math.min(this.cursor, this.times.length - 1);
    this.render();
  }

  render() {
    const width = Math.max(200, this.root.clientWidth || 400);
    const height = this.height;
    const { t0, t1, series } = this.data;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.setAttribute("width", width);
    this.svg.setAttribute("height", height);
    this.svg.replaceChildren();
    let max = 0;
    for (const s of series) for (const [, v] of s.values) if (v !== null && v > max) max = v;
    const scale = niceTicks(0, max, 4);
    const plotW = width - MARGIN.left - MARGIN.right;
    const plotH = height - MARGIN.top - MARGIN.bottom;
    const x = (t) => MARGIN.left + ((t - t0) / Math.max(1, t1 - t0)) * plotW;
    const y = (v) => MARGIN.top + plotH - ((v - scale.min) / (scale.max - scale.min)) * plotH;
    this.x = x;
    this.xInverse = (px) => t0 + ((px - MARGIN.left) / plotW) * Math.max(1, t1 - t0);

    const grid = el("g", { class: "chart-grid" }, this.svg);
    for (const v of scale.ticks) {
      const py = y(v);
      el("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: py, y2: py }, grid);
      const text = el("text", { x: MARGIN.left - 6, y: py + 4, "text-anchor": "end" }, grid);
      text.textContent = this.format(v);
    }
    for (const t of timeTicks(t0, t1, Math.max(2, Math.floor(plotW / 110)))) {
      const text = el("text", { x: x(t), y: height - 6, "text-anchor": "middle" }, grid);
      text.textContent = clockLabel(t);
      el("line", { x1: x(t), x2: x(t), y1: MARGIN.top + plotH, y2: MARGIN.top + plotH + 4 }, grid);
    }
    const lines = el("g", { class: "chart-lines" }, this.svg);
    for (const s of series) {
      const d = linePath(s.values, x, y, 5);
      if (d) el("path", { d, stroke: s.color, class: "chart-line" }, lines);
    }
    if (!series.some((s) => s.values.some(([, v]) => v !== null))) {
      const text = el(
        "text",
        { x: MARGIN.left + plotW / 2, y: MARGIN.top + plotH / 2, "text-anchor": "middle", class: "chart-empty" },
        this.svg,
      );
      text.textContent = this.empty;
    }
    this.rule = el("line", { class: "chart-rule", y1: MARGIN.top, y2: MARGIN.top + plotH, visibility: "hidden" }, this.svg);
    if (this.cursor !== null) this.#show(this.cursor);
  }

  #hover(event) {
    if (!this.times.length || !this.xInverse) return;
    const box = this.svg.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * Number(this.svg.getAttribute("width"));
    this.#show(nearestIndex(this.times, this.xInverse(px)));
  }

  #key(event) {
    if (!this.times.length) return;
    const last = this.times.length - 1;
    const at = this.cursor ?? last;
    const moves = {
      ArrowLeft: at - (event.shiftKey ? 10 : 1),
      ArrowRight: at + (event.shiftKey ? 10 : 1),
      Home: 0,
      End: last,
    };
    if (event.key === "Escape") {
      this.#hide();
      return;
    }
    if (!(event.key in moves)) return;
    event.preventDefault();
    this.#show(Math.max(0, Math.min(last, moves[event.key])));
  }

  #show(index) {
    if (index < 0 || !this.times.length || !this.x) return;
    this.cursor = index;
    const t = this.times[index];
    const px = this.x(t);
    this.rule.setAttribute("x1", px);
    this.rule.setAttribute("x2", px);
    this.rule.setAttribute("visibility", "visible");
    const rows = this.data.series
      .map((s) => ({ s, v: valueAt(s.values, t) }))
      .filter((r) => r.v !== undefined)
      .sort((a, b) => (b.v ?? -1) - (a.v ?? -1));
    const title = document.createElement("div");
    title.className = "chart-readout-time";
    title.textContent = fullClock(t);
    const list = document.createElement("ul");
    for (const { s, v } of rows.slice(0, 8)) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = s.color;
      const name = document.createElement("span");
      name.className = "chart-readout-name";
      name.textContent = s.name;
      const value = document.createElement("span");
      value.className = "chart-readout-value";
      value.textContent = v === null ? "–" : this.format(v);
      item.append(swatch, name, value);
      list.appendChild(item);
    }
    this.readout.replaceChildren(title, list);
    this.readout.hidden = false;
    const width = Number(this.svg.getAttribute("width"));
    const left = px > width / 2 ? px - this.readout.offsetWidth - 12 : px + 12;
    this.readout.style.left = `${Math.max(0, left)}px`;
  }

  #hide() {
    this.cursor = null;
    this.readout.hidden = true;
    if (this.rule) this.rule.setAttribute("visibility", "hidden");
  }
}

function valueAt(values, t) {
  // Values are sorted by time: a binary search, then an exact match or nothing.
  const times = values.map(([vt]) => vt);
  const i = nearestIndex(times, t);
  return i >= 0 && times[i] === t ? values[i][1] : undefined;
}
