// A cluster's metrics over the last hour as small charts (inline SVG): connections,
// operations per second, storage used and replication lag, a line per node. Each
// chart is an image named for screen readers by its title, which says the newest
// and highest value of each node in words; the lines only repeat that.

import { bytes, h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 300;
const HEIGHT = 90;
const PAD = { left: 4, right: 4, top: 16, bottom: 16 };
const SPAN = 3600; // seconds shown: the last hour
const COUNT = (v) => Math.round(v).toLocaleString();
const RATE = (v) => `${v.toLocaleString(undefined, { maximumFractionDigits: 1 })}/s`;
const CHARTS = [
  { metric: "connections", title: "Connections", show: COUNT },
  { metric: "operations_per_second", title: "Operations per second", show: RATE },
  { metric: "storage_used_bytes", title: "Storage used", show: bytes },
  { metric: "replication_lag_bytes", title: "Replication lag", show: bytes },
];

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// The words a screen reader hears, and a sighted person sees as the caption.
function describe(chart, series) {
  const parts = series.map((s) => {
    const values = s.points.map((p) => p[1]);
    return `node ${s.ordinal}: now ${chart.show(values[values.length - 1])}, ` +
      `highest ${chart.show(Math.max(...values))}`;
  });
  return `${chart.title} over the last hour. ${parts.join("; ")}.`;
}

function chartFor(chart, series, until) {
  const id = `chart-${chart.metric}`;
  const top = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (t) => PAD.left + (1 - (until - t) / SPAN) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const words = describe(chart, series);
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "chart",
    "aria-labelledby": `${id}-title`, focusable: "false" });
  root.append(svg("title", { id: `${id}-title` }, words),
    svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: HEIGHT - PAD.bottom,
      y2: HEIGHT - PAD.bottom, class: "chart-axis" }),
    svg("text", { x: PAD.left, y: 11, class: "chart-text" }, `max ${chart.show(top)}`),
    svg("text", { x: PAD.left, y: HEIGHT - 3, class: "chart-text" }, "1 h ago"),
    svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 3, "text-anchor": "end",
      class: "chart-text" }, "now"));
  for (const s of series) {
    const points = s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    if (points.length === 1) points.push(points[0]); // a dot rather than nothing
    root.append(svg("polyline", { points: points.join(" "),
      class: `chart-line chart-node-${s.ordinal % 5}` }));
  }
  return h("figure", { class: "chart-wrap" },
    h("figcaption", { class: "chart-caption" }, chart.title), root);
}

// `metrics` is GET /v2/clusters/{id}/metrics?since=1h.
export function charts(metrics) {
  const until = new Date(metrics.until).getTime() / 1000;
  const drawn = CHARTS.map((chart) => {
    const series = metrics.series.filter((s) => s.metric === chart.metric && s.points.length);
    if (series.length) return chartFor(chart, series, until);
    return h("figure", { class: "chart-wrap" },
      h("figcaption", { class: "chart-caption" }, chart.title),
      h("p", { class: "muted" }, chart.metric === "replication_lag_bytes"
        ? "No replicas." : "No samples yet."));
  });
  return h("div", { class: "charts" }, ...drawn);
}
