// A cluster's connection pooler (PostgreSQL: PATCH {"pooler"} starts an
// operation) and its storage autoscaling (PATCH {"storage_autoscale"} is applied
// at once). The create form uses the same fields (poolerFields, autoscaleFields).

import * as api from "./api.js";
import { announce, errorBox, field, h, options, replace } from "./dom.js";

// Mode ("" for none) and most client connections; `body()` is the API's value.
export function poolerFields(current, prefix = "") {
  const mode = h("select", { name: `${prefix}pooler-mode` },
    options([["", "none"], ["transaction", "transaction"], ["session", "session"]],
      current?.mode ?? ""));
  const max = h("input", { name: `${prefix}pooler-max`, type: "number", min: "10",
    max: "10000", inputmode: "numeric", value: String(current?.max_client_conn ?? 500) });
  const maxField = field("Most client connections", max, "10 to 10,000");
  const sync = () => { maxField.hidden = !mode.value; };
  mode.addEventListener("change", sync);
  sync();
  return {
    parts: [field("Pooler mode", mode,
      "PgBouncer at an address of its own (port 6432); transaction: many clients share " +
      "few connections"), maxField],
    body: () => (mode.value ? { mode: mode.value, max_client_conn: Number(max.value) } : null),
  };
}

// Largest size (empty: off) and the threshold in percent.
export function autoscaleFields(current, prefix = "") {
  const max = h("input", { name: `${prefix}autoscale-max`, type: "number", min: "1",
    inputmode: "numeric", value: current ? String(current.max_gb) : "" });
  const threshold = h("input", { name: `${prefix}autoscale-threshold`, type: "number",
    min: "50", max: "90", inputmode: "numeric",
    value: String(current?.threshold_percent ?? 80) });
  return {
    parts: [field("Grow storage up to (GB)", max, "Empty: storage does not grow by itself"),
      field("Grow past (% used)", threshold, "50 to 90")],
    body: () => (max.value.trim() ? { max_gb: Number(max.value),
      threshold_percent: Number(threshold.value) } : null),
  };
}

function settingForm(label, fields, submit) {
  const feedback = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit" }, `Save ${label.toLowerCase()}`);
  const form = h("form", { class: "inline", "aria-label": label, novalidate: true,
    onsubmit: async (event) => {
    event.preventDefault();
    button.disabled = true;
    feedback.replaceChildren();
    try {
      replace(feedback, h("p", { class: "notice" }, await submit(fields.body())));
      announce(`${label} saved`);
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  } }, fields.parts, button);
  return h("div", {}, form, feedback);
}

export function featuresSection(c, engine, signal) {
  const pooled = engine.abilities.includes("connection pooler");
  const path = `/v2/clusters/${c.id}`;
  return h("section", { "aria-labelledby": "features-title" },
    h("h2", { id: "features-title" }, pooled ? "Pooler and storage growth" : "Storage growth"),
    pooled ? settingForm("Pooler", poolerFields(c.pooler), async (pooler) => {
      const accepted = await api.patch(path, { pooler }, { signal });
      return `Pooler change started (operation ${accepted.operation.kind}); its steps are ` +
        "shown under Operation.";
    }) : null,
    settingForm("Autoscaling", autoscaleFields(c.storage_autoscale), async (value) => {
      const view = await api.patch(path, { storage_autoscale: value }, { signal });
      const now = view.cluster.storage_autoscale;
      return now ? `Storage grows by itself past ${now.threshold_percent}% used, up to ` +
        `${now.max_gb} GB per node.` : "Storage does not grow by itself.";
    }));
}
