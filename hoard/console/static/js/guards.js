// A cluster's guard rails: its labels (edited here), deletion protection with a
// toggle (PATCH {"labels"} and {"deletion_protection"} are applied at once: 200,
// no operation), and its maintenance window (maintenance.js).

import * as api from "./api.js";
import { announce, errorBox, field, h, replace } from "./dom.js";
import { windowSection } from "./maintenance.js";

export function labelList(labels) {
  const entries = Object.entries(labels || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "plain labels" }, entries.map(([k, v]) =>
    h("li", {}, h("code", {}, `${k}=${v}`))));
}

function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

// "key=value, key=value" as an object; a part without "=" is named back.
function parseLabels(text) {
  const labels = {};
  for (const part of text.split(/[,\n]/).map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf("=");
    if (at < 1) throw new Error(`"${part}" is not key=value`);
    labels[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return labels;
}

// Replace the labels with what the field says; the API judges them, and its
// refusal is shown against the field.
function labelsForm(c, signal, shown) {
  const input = h("input", { name: "labels", autocomplete: "off", spellcheck: "false",
    value: labelText(c.labels) });
  const feedback = h("div", { "aria-live": "polite" });
  const error = h("span", { class: "field-error", id: "labels-error" });
  const wrap = field("Cluster labels", input,
    "key=value, comma-separated; empty removes them all");
  const hint = input.getAttribute("aria-describedby");
  function mark(err) {
    feedback.replaceChildren(err ? errorBox(err) : []);
    if (err) {
      input.setAttribute("aria-invalid", "true");
      error.textContent = err.problem?.errors?.[0]?.message ?? err.message;
      wrap.append(error);
      input.setAttribute("aria-describedby", `${hint} labels-error`);
    } else {
      input.removeAttribute("aria-invalid");
      error.remove();
      input.setAttribute("aria-describedby", hint);
    }
  }
  const button = h("button", { type: "submit" }, "Save labels");
  const form = h("form", { class: "inline", "aria-label": "Labels", onsubmit: async (event) => {
    event.preventDefault();
    let labels;
    try {
      labels = parseLabels(input.value);
    } catch (err) {
      mark(err);
      return;
    }
    button.disabled = true;
    try {
      const view = await api.patch(`/v2/clusters/${c.id}`, { labels }, { signal });
      mark(null);
      replace(shown, labelList(view.cluster.labels));
      input.value = labelText(view.cluster.labels);
      feedback.replaceChildren(h("p", { class: "notice" }, "Labels saved."));
      announce("Labels saved");
    } catch (err) {
      if (err.name !== "AbortError") mark(err);
    } finally {
      button.disabled = false;
    }
  } }, wrap, button);
  return h("div", {}, form, feedback);
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
  const shown = h("dd", {}, labelList(c.labels));
  return h("section", { "aria-labelledby": "guards-title" },
    h("h2", { id: "guards-title" }, "Guard rails"),
    h("dl", { class: "facts" },
      h("dt", {}, "Labels"), shown,
      h("dt", { id: "protection-label" }, "Deletion protection"),
      h("dd", {}, toggle, " ", state)),
    feedback,
    labelsForm(c, signal, shown),
    windowSection(c, signal));
}
