// The create form, built from the catalog (GET /v2/engines, GET /v2/sizes) and
// the project's backups; the API judges the request, and its problem details
// are shown next to the form (and against the field they name).

import * as api from "./api.js";
import { announce, errorBox, field, h, options, replace } from "./dom.js";
import { autoscaleFields, poolerFields } from "./features.js";

function sizeText(s) {
  return `${s.name}: ${s.cpus} CPU, ${s.memory_mb} MB (${s.description})`;
}

export async function createView(main, ctx, params) {
  const [{ engines, providers = [] }, { sizes }, backups] = await Promise.all([
    api.get("/v2/engines", { signal: ctx.signal }),
    api.get("/v2/sizes", { signal: ctx.signal }),
    api.all("/v2/backups?limit=1000", "backups", { signal: ctx.signal }),
  ]);
  const available = backups.filter((b) => b.status === "available");
  const chosenBackup = available.find((b) => b.id === params.get("restore"));
  // A point-in-time restore: a cluster's backups and logs at a chosen second.
  const pointInTime = params.get("restore_cluster") && params.get("time")
    ? { cluster_id: params.get("restore_cluster"), time: params.get("time") } : null;
  const source = pointInTime && backups.find((b) => b.cluster_id === pointInTime.cluster_id);

  const name = h("input", { name: "name", required: true, autocomplete: "off",
    maxlength: "63", value: params.get("name") || "" });
  const engine = h("select", { name: "engine" },
    options(engines.map((e) => [e.name, e.display_name]),
      chosenBackup?.engine ?? source?.engine));
  const version = h("select", { name: "version" });
  // The provider is a choice only where more than one offers the engine; a
  // cluster stays on it for life. Older servers name no providers: no choice.
  const provider = h("select", { name: "provider" });
  const providerField = field("Provider", provider,
    "Where the cluster runs, for its whole life");
  const defaultProvider = providers.find((p) => p.default)?.name;
  const size = h("select", { name: "size" },
    options(sizes.map((s) => [s.name, sizeText(s)]), "small"));
  const nodes = h("input", { name: "nodes", type: "number", min: "1", value: "1",
    inputmode: "numeric" });
  const durability = h("select", { name: "durability" });
  const durabilityField = field("Durability", durability,
    "sync: a commit waits until a replica has it");
  const storage = h("input", { name: "storage_gb", type: "number", min: "1", value: "10",
    inputmode: "numeric" });
  const restore = h("select", { name: "restore" });
  const pool = poolerFields(null, "create-");
  const poolGroup = h("fieldset", { class: "group" }, h("legend", {}, "Connection pooler"),
    pool.parts);
  const grow = autoscaleFields(null, "create-");
  const growGroup = h("fieldset", { class: "group" }, h("legend", {}, "Storage growth"),
    grow.parts);
  const feedback = h("div", { "aria-live": "assertive" });
  const restoreField = field("Restore from a backup", restore,
    "The new cluster starts with that backup's data");

  const currentEngine = () => engines.find((e) => e.name === engine.value);
  // The chosen provider's offer for the engine: its versions and what it lacks
  // (the catalog's own fields when the server names no providers).
  function offer() {
    const e = currentEngine();
    const chosen = (e.providers || []).find((p) => p.name === provider.value);
    return chosen
      ? { versions: chosen.versions, lacks: chosen.missing_abilities }
      : { versions: e.versions, lacks: [] };
  }
  function syncEngine() {
    const e = currentEngine();
    const offering = (e.providers || []).filter((p) => p.versions.length);
    const keep = offering.some((p) => p.name === provider.value) ? provider.value
      : (offering.find((p) => p.name === defaultProvider) ?? offering[0])?.name;
    replace(provider, options(offering.map((p) =>
      [p.name, p.default ? `${p.name} (default)` : p.name]), keep));
    providerField.hidden = offering.length < 2;
    syncProvider();
  }
  function syncProvider() {
    const e = currentEngine();
    const { versions, lacks } = offer();
    replace(version, options(versions, versions[0]));
    const maxNodes = lacks.includes("replicated clusters") ? 1 : e.max_nodes;
    nodes.max = String(maxNodes);
    if (Number(nodes.value) > maxNodes) nodes.value = String(maxNodes);
    nodes.disabled = maxNodes === 1;
    poolGroup.hidden = !e.abilities.includes("connection pooler")
      || lacks.includes("connection pooler");
    growGroup.hidden = lacks.includes("storage autoscale");
    restoreField.hidden = Boolean(pointInTime) || lacks.includes("backups");
    replace(durability, options([["", "engine default"], ...e.durabilities]));
    const ours = available.filter((b) => b.engine === e.name);
    replace(restore, options([["", "no: a new, empty cluster"], ...ours.map((b) =>
      [b.id, `${b.cluster_name} · ${new Date(b.created_at).toLocaleString()} · ${b.kind}`])],
    chosenBackup?.engine === e.name ? chosenBackup.id : ""));
    syncNodes();
  }
  function syncNodes() {
    durabilityField.hidden = !(Number(nodes.value) > 1 && currentEngine().durabilities.length);
  }
  function syncRestore() {
    const backup = restoreField.hidden && !pointInTime ? null
      : available.find((b) => b.id === restore.value) ?? source;
    version.disabled = Boolean(backup);
    if (backup) replace(version, options([backup.version]));
    else replace(version, options(offer().versions, offer().versions[0]));
  }
  engine.addEventListener("change", () => { syncEngine(); syncRestore(); });
  provider.addEventListener("change", () => { syncProvider(); syncRestore(); });
  nodes.addEventListener("input", syncNodes);
  restore.addEventListener("change", syncRestore);
  syncEngine();
  syncRestore();
  engine.disabled = Boolean(source); // a point-in-time restore keeps its cluster's engine

  const form = h("form", { class: "stack", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    feedback.replaceChildren();
    form.querySelectorAll("[aria-invalid]").forEach((el) => {
      el.removeAttribute("aria-invalid");
      el.setAttribute("aria-describedby", (el.getAttribute("aria-describedby") || "")
        .replace(`${el.id}-error`, "").trim());
    });
    form.querySelectorAll(".field-error").forEach((el) => el.remove());
    const body = { name: name.value.trim(), engine: engine.value, size: size.value,
      nodes: Number(nodes.value), storage_gb: Number(storage.value) };
    if (provider.value) body.provider = provider.value; // the one offering it, if alone
    if (pointInTime) body.restore = pointInTime;
    else if (!restoreField.hidden && restore.value) body.restore = { backup_id: restore.value };
    else body.version = version.value;
    if (!durabilityField.hidden && durability.value) body.durability = durability.value;
    if (!poolGroup.hidden && pool.body()) body.pooler = pool.body();
    if (!growGroup.hidden && grow.body()) body.storage_autoscale = grow.body();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const accepted = await api.post("/v2/clusters", body);
      announce(`Creating ${accepted.cluster.name}`);
      location.hash = `#/clusters/${accepted.cluster.id}`;
    } catch (err) {
      submit.disabled = false;
      feedback.replaceChildren(errorBox(err));
      markFields(form, err);
      feedback.querySelector("[role=alert]")?.setAttribute("tabindex", "-1");
      feedback.querySelector("[role=alert]")?.focus();
    }
  } },
  field("Name", name, "Lower-case letters, digits and dashes; unique in the project"),
  field("Engine", engine),
  providerField,
  field("Version", version),
  field("Size", size),
  field("Nodes", nodes, "1: a standalone instance; more: replicated, with automatic failover"),
  durabilityField,
  field("Storage (GB)", storage, "Per node"),
  growGroup,
  poolGroup,
  pointInTime ? h("p", { class: "notice" }, `Restoring ${source?.cluster_name ?? "a cluster"} ` +
    `as it was at ${new Date(pointInTime.time).toLocaleString()}.`) : null,
  restoreField,
  h("div", {}, h("button", { type: "submit" }, "Create cluster"), " ",
    h("a", { href: "#/clusters" }, "Cancel")));
  replace(main, h("h1", {}, "Create a cluster"), feedback, form);
  name.focus();
}

// Point each field the problem names at its message: aria-invalid, and the
// message under the field, tied to it as part of its description.
function markFields(form, err) {
  for (const e of err?.problem?.errors || []) {
    const fieldName = String(e.field).split(".")[0];
    const input = form.querySelector(`[name="${CSS.escape(fieldName)}"]`);
    if (!input) continue;
    input.setAttribute("aria-invalid", "true");
    const message = h("span", { class: "field-error", id: `${input.id}-error` }, e.message);
    input.parentElement.append(message);
    const described = (input.getAttribute("aria-describedby") || "").split(" ");
    input.setAttribute("aria-describedby", [...described, message.id].join(" ").trim());
  }
}
