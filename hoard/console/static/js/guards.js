// A cluster's guard rails: its labels, deletion protection with a toggle
// (PATCH {"deletion_protection"} is applied at once: 200, no operation), and its
// maintenance window (maintenance.js).

import * as api from "./api.js";
import { announce, errorBox, h, replace } from "./dom.js";
import { windowSection } from "./maintenance.js";

export function labelList(labels) {
  const entries = Object.entries(labels || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "plain labels" }, entries.map(([k, v]) =>
    h("li", {}, h("code", {}, `${k}=${v}`))));
}

export function guardsSection(c, signal) {
  const feedback = h("div", { "aria-live": "polite" });
  const state = h("strong", { id: "protection-state" });
  let on = c.deletion_protection;
  const toggle = h("button", { type: "button", class: "secondary", role: "switch",
    "aria-labelledby": "protection-label", onclick: async () => {
      toggle.disabled = true;
      try {
        const view = await api.patch(`/v2/clusters/${c.id}`, { deletion_protection: !on },
          { signal });
        on = view.cluster.deletion_protection;
        draw();
        feedback.replaceChildren();
        announce(`Deletion protection ${on ? "on" : "off"}`);
      } catch (err) {
        if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
      } finally {
        toggle.disabled = false;
      }
    } });
  function draw() {
    toggle.setAttribute("aria-checked", String(on));
    toggle.textContent = on ? "On: turn off" : "Off: turn on";
    replace(state, on ? "A delete is refused while this is on." : "The cluster can be deleted.");
  }
  draw();
  return h("section", { "aria-labelledby": "guards-title" },
    h("h2", { id: "guards-title" }, "Guard rails"),
    h("dl", { class: "facts" },
      h("dt", {}, "Labels"), h("dd", {}, labelList(c.labels)),
      h("dt", { id: "protection-label" }, "Deletion protection"),
      h("dd", {}, toggle, " ", state)),
    feedback,
    windowSection(c, signal));
}
