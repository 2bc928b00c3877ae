// Changing a cluster: restart, stop, start, and resize (size, storage, nodes).
// Each is one /v2 call that returns an operation; the page's poll draws it.

import * as api from "./api.js";
import { announce, errorBox, field, h, options } from "./dom.js";

const RUNNING = ["ACTIVE", "DEGRADED"];

export function changesSection(c, engine, sizes, signal) {
  const feedback = h("div", { "aria-live": "polite" });

  async function act(label, work) {
    feedback.replaceChildren(h("p", { class: "muted" }, `${label}…`));
    try {
      const accepted = await work();
      feedback.replaceChildren(h("p", { class: "notice" },
        `${label}: started (operation ${accepted.operation.kind}); its steps are shown above.`));
      announce(`${label} started`);
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    }
  }

  const action = (name, label) => h("button", { type: "button", class: "secondary",
    onclick: () => act(label, () => api.post(`/v2/clusters/${c.id}/actions/${name}`, {},
      { signal })) }, label);
  const buttons = RUNNING.includes(c.status)
    ? [action("restart", "Restart"), " ", action("stop", "Stop")]
    : c.status === "STOPPED" ? [action("start", "Start")] : [];

  const size = h("select", { name: "resize-size" },
    options(sizes.map((s) => [s.name, `${s.name}: ${s.cpus} CPU, ${s.memory_mb} MB`]), c.size));
  const storage = h("input", { name: "resize-storage", type: "number", min: String(c.storage_gb),
    value: String(c.storage_gb), inputmode: "numeric" });
  const nodes = h("input", { name: "resize-nodes", type: "number", min: "1",
    max: String(engine.max_nodes), value: String(c.nodes), inputmode: "numeric" });
  const form = h("form", { class: "inline", "aria-label": "Resize", onsubmit: (event) => {
    event.preventDefault();
    const body = {};
    if (size.value !== c.size) body.size = size.value;
    if (Number(storage.value) !== c.storage_gb) body.storage_gb = Number(storage.value);
    if (engine.max_nodes > 1 && Number(nodes.value) !== c.nodes) body.nodes = Number(nodes.value);
    act("Resize", () => api.patch(`/v2/clusters/${c.id}`, body, { signal }));
  } },
  field("New size", size),
  field("Storage per node (GB)", storage, "It can grow, not shrink"),
  engine.max_nodes > 1 ? field("Nodes", nodes) : null,
  h("button", { type: "submit" }, "Apply"));

  if (!buttons.length && !RUNNING.includes(c.status)) return null;
  return h("section", { "aria-labelledby": "changes-title" },
    h("h2", { id: "changes-title" }, "Change"),
    feedback,
    buttons.length ? h("p", {}, buttons) : null,
    RUNNING.includes(c.status) ? form : null);
}
