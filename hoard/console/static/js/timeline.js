// The restorable window drawn as a timeline (inline SVG): a bar from the earliest
// to the latest restorable second, and a marker at the time chosen in the picker.
// Named for screen readers by its text; the picker stays the way to choose.

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const PAD = 10;

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

const label = (d) => d.toLocaleString();

// `window` is {earliest, latest} (ISO); returns the SVG and `mark(date)` to move the marker.
export function timeline(window) {
  const start = new Date(window.earliest).getTime();
  const end = new Date(window.latest).getTime();
  const x = (t) => PAD + (end > start ? (t - start) / (end - start) : 1) * (WIDTH - 2 * PAD);
  const name = `Restorable window: from ${label(new Date(start))} to ${label(new Date(end))}`;
  const title = svg("title", { id: "timeline-title" }, name);
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} 56`, role: "img", class: "timeline",
    "aria-labelledby": "timeline-title", focusable: "false" });
  const marker = svg("line", { y1: 8, y2: 36, class: "timeline-mark" });
  root.append(title,
    svg("rect", { x: PAD, y: 16, width: WIDTH - 2 * PAD, height: 12, rx: 3,
      class: "timeline-bar" }),
    marker,
    svg("text", { x: PAD, y: 52, class: "timeline-text" }, label(new Date(start))),
    svg("text", { x: WIDTH - PAD, y: 52, "text-anchor": "end", class: "timeline-text" },
      label(new Date(end))));
  root.mark = (date) => {
    const t = Math.min(end, Math.max(start, date.getTime()));
    marker.setAttribute("x1", String(x(t)));
    marker.setAttribute("x2", String(x(t)));
    title.textContent = Number.isNaN(date.getTime()) ? name
      : `${name}; chosen: ${label(new Date(t))}`;
  };
  root.mark(new Date(end));
  return root;
}
