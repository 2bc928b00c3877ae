// A cluster's configuration: a form generated from the engine's parameter schema
// (GET /v2/engines/{name}) that creates a configuration and attaches it, the one
// attached (with a detach), and the settings waiting for a restart.

import * as api from "./api.js";
import { announce, errorBox, field, h, options, replace } from "./dom.js";
import { describeWindow } from "./maintenance.js";

const RUNNING = ["ACTIVE", "DEGRADED"];

function hint(p) {
  const bounds = p.type === "integer" && (p.minimum !== null || p.maximum !== null)
    ? ` ${p.minimum ?? "…"} to ${p.maximum ?? "…"}${p.unit ? ` ${p.unit}` : ""}.` : "";
  return `${p.description}.${bounds} ${p.dynamic ? "Applied live." : "Needs a restart."}`;
}

// One control per parameter; an empty one is left out of the configuration.
function control(p) {
  const attrs = { name: `param-${p.name}`, "data-param": p.name };
  if (p.type === "boolean" || p.type === "enum") {
    const values = p.type === "boolean" ? ["true", "false"] : p.allowed;
    return h("select", attrs, options([["", "default"], ...values], ""));
  }
  if (p.type === "integer") {
    return h("input", { ...attrs, type: "number", inputmode: "numeric",
      min: p.minimum === null ? null : String(p.minimum),
      max: p.maximum === null ? null : String(p.maximum) });
  }
  return h("input", { ...attrs, autocomplete: "off" });
}

function value(p, el) {
  if (p.type === "integer") return Number(el.value);
  if (p.type === "boolean") return el.value === "true";
  return el.value;
}

// What is attached and what waits for a restart; redrawn as the cluster changes.
export function configurationStatus(c, signal, feedback) {
  const restart = h("button", { type: "button", onclick: async () => {
    restart.disabled = true;
    try {
      await api.post(`/v2/clusters/${c.id}/actions/restart`, {}, { signal });
      feedback.replaceChildren(h("p", { class: "notice" },
        "Restart started; its steps are shown under Operation."));
      announce("Restart started");
    } catch (err) {
      restart.disabled = false;
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    }
  } }, "Restart now");
  const detach = h("button", { type: "button", class: "secondary", onclick: async () => {
    detach.disabled = true;
    try {
      await api.patch(`/v2/clusters/${c.id}`, { configuration_id: null }, { signal });
      feedback.replaceChildren(h("p", { class: "notice" }, "Configuration detached."));
      announce("Configuration detached");
    } catch (err) {
      detach.disabled = false;
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    }
  } }, "Detach configuration");
  const attached = h("div");
  if (c.configuration_id) {
    api.get(`/v2/configurations/${c.configuration_id}`, { signal }).then((conf) => {
      const values = Object.entries(conf.values).map(([k, v]) => `${k} = ${v}`).join(", ");
      replace(attached, h("p", {}, "Attached: ", h("strong", {}, conf.name),
        values ? ` (${values})` : "", " ", RUNNING.includes(c.status) ? detach : null));
    }).catch((err) => {
      if (err.name !== "AbortError") replace(attached, errorBox(err));
    });
  } else {
    replace(attached, h("p", { class: "muted" }, "No configuration attached."));
  }
  return h("div", {}, attached,
    c.pending_restart.length ? h("p", { class: "notice", id: "pending-restart" },
      `Waiting for a restart: ${c.pending_restart.join(", ")}. `,
      c.maintenance_window ? `Hoard applies them in the maintenance window ` +
        `(${describeWindow(c.maintenance_window)}), or now: ` : "",
      RUNNING.includes(c.status) ? restart : null) : null);
}

// The form: a name and the engine's parameters; the API judges every value.
export function configurationForm(c, engine, signal, feedback) {
  const params = engine.parameters || [];
  const name = h("input", { name: "configuration-name", autocomplete: "off",
    spellcheck: "false", value: `${c.name}-settings` });
  const controls = params.map((p) => [p, control(p)]);
  const submit = h("button", { type: "submit" }, "Create and attach");
  return h("form", { class: "stack", "aria-label": "New configuration", novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      const values = {};
      for (const [p, el] of controls) if (el.value !== "") values[p.name] = value(p, el);
      submit.disabled = true;
      feedback.replaceChildren(h("p", { class: "muted" }, "Creating the configuration…"));
      try {
        const conf = await api.post("/v2/configurations", { name: name.value,
          engine: c.engine, version: c.version, values }, { signal });
        await api.patch(`/v2/clusters/${c.id}`, { configuration_id: conf.id }, { signal });
        feedback.replaceChildren(h("p", { class: "notice" },
          `Configuration ${conf.name} created and attached.`));
        announce(`Configuration ${conf.name} attached`);
      } catch (err) {
        if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
      } finally {
        submit.disabled = false;
      }
    } },
  field("Configuration name", name),
  h("fieldset", {}, h("legend", {}, `${engine.display_name || engine.name} parameters ` +
    "(empty: the default)"),
  h("div", { class: "params" }, controls.map(([p, el]) => field(p.name, el, hint(p))))),
  h("div", {}, submit));
}

// The section: status (redrawn by the page's poll through `update`) and the form.
export function configurationSection(c, engine, signal) {
  if (!(engine.parameters || []).length) return null;
  const feedback = h("div", { "aria-live": "polite" });
  const current = h("div");
  const section = h("section", { "aria-labelledby": "config-title" },
    h("h2", { id: "config-title" }, "Configuration"), feedback, current,
    RUNNING.includes(c.status) ? configurationForm(c, engine, signal, feedback) : null);
  let shown = "";
  section.update = (cluster) => {
    const key = JSON.stringify([cluster.status, cluster.configuration_id,
      cluster.pending_restart]);
    if (key === shown) return;
    shown = key;
    replace(current, configurationStatus(cluster, signal, feedback));
  };
  section.update(c);
  return section;
}
