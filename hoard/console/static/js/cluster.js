// A cluster's page: what it is, where to connect, its members, the operation in
// progress, its users, databases and backups, its events, and deleting it.

import * as api from "./api.js";
import { accountsSection } from "./accounts.js";
import { backupsSection } from "./backups.js";
import { changesSection } from "./changes.js";
import { charts } from "./charts.js";
import { configurationSection } from "./configuration.js";
import { endpointList } from "./clusters.js";
import { featuresSection } from "./features.js";
import { guardsSection } from "./guards.js";
import { logsSection } from "./logs.js";
import { announce, bytes, errorBox, field, h, replace, status, table, when } from "./dom.js";
import { operationPanel, runningLink } from "./operations.js";

const POLL_MS = 2000;
const RUNNING = ["ACTIVE", "DEGRADED"];

// Move to the operation's steps on this page (the link's address opens them
// from elsewhere: #/clusters/<id>?show=operation).
function showOperation(event) {
  event?.preventDefault();
  const title = document.getElementById("op-title");
  if (!title) return;
  title.tabIndex = -1;
  title.focus();
}

function facts(c) {
  const items = [["Status", [status(c.status), c.status_reason ? ` ${c.status_reason}` : ""]],
    ["Operation", c.operation ? runningLink(c.id, c.operation, showOperation)
      : h("span", { class: "muted" }, "none running")],
    ["Engine", `${c.engine} ${c.version}`], ["Size", c.size], ["Nodes", String(c.nodes)],
    ["Storage", `${c.storage_gb} GB per node`], ["Durability", c.durability],
    ["Provider", c.provider], ["Created", when(c.created_at)], ["Id", h("code", {}, c.id)]];
  if (c.pending_restart.length) {
    items.push(["Waiting for a restart", c.pending_restart.join(", ")]);
  }
  return h("dl", { class: "facts" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

// Members with role, zone, health, lag and storage; in a running replicated
// cluster each replica can be made the primary (a switchover).
function members(c, switchover) {
  const replicated = c.nodes > 1 && RUNNING.includes(c.status);
  const headers = ["Node", "Role", "Zone", "Health", "Lag", "Storage used"];
  return table("Members", replicated ? [...headers, "Actions"] : headers,
    c.members.map((m) => h("tr", {},
      h("th", { scope: "row" }, h("code", { title: m.id }, `#${m.ordinal}`)),
      h("td", {}, m.role),
      h("td", {}, m.zone || ""),
      h("td", {}, status(m.status), m.status_reason ? h("div", { class: "muted" },
        m.status_reason) : null),
      h("td", {}, m.lag_bytes === null ? "" : bytes(m.lag_bytes)),
      h("td", {}, m.storage ? `${bytes(m.storage.used_bytes)} of ${bytes(m.storage.total_bytes)}`
        : ""),
      replicated ? h("td", {}, m.role === "replica" ? h("button", { type: "button",
        class: "secondary", "aria-label": `Make primary: node #${m.ordinal}`,
        onclick: () => switchover(m) }, "Make primary") : "") : null)));
}

function maskUri(uri, password) {
  return password ? uri.split(encodeURIComponent(password)).join("••••••").split(password)
    .join("••••••") : uri;
}

// The connection string, fetched only when asked for; the password is masked
// until the person reveals it.
function connection(clusterId, signal) {
  const area = h("div");
  const show = h("button", { type: "button", class: "secondary", onclick: async () => {
    show.disabled = true;
    try {
      const creds = await api.get(`/v2/clusters/${clusterId}/credentials`, { signal });
      const uri = h("code", { class: "secret", id: "connection-uri" },
        maskUri(creds.uri, creds.password));
      const reveal = h("button", { type: "button", class: "secondary", "aria-pressed": "false",
        "aria-controls": "connection-uri", onclick: () => {
          const on = reveal.getAttribute("aria-pressed") !== "true";
          reveal.setAttribute("aria-pressed", String(on));
          reveal.textContent = on ? "Hide password" : "Reveal password";
          uri.textContent = on ? creds.uri : maskUri(creds.uri, creds.password);
        } }, "Reveal password");
      const copy = h("button", { type: "button", class: "secondary", onclick: async () => {
        try {
          await navigator.clipboard.writeText(creds.uri);
          announce("Connection string copied");
          copy.textContent = "Copied";
        } catch {
          announce("Copying is not allowed here: reveal the password and select the text");
        }
      } }, "Copy");
      show.hidden = true;
      replace(area, h("dl", { class: "facts" },
        h("dt", {}, "User"), h("dd", {}, h("code", {}, creds.username)),
        h("dt", {}, "Host"), h("dd", {}, h("code", {}, `${creds.host}:${creds.port}`)),
        h("dt", {}, "Connection string"), h("dd", {}, uri, " ", reveal, " ", copy),
        h("dt", {}, "CA certificate"), h("dd", {}, h("a", { href: "/v2/ca.pem",
          download: "hoard-ca.pem" }, "hoard-ca.pem"), " (verify the server with it)")));
      reveal.focus();
    } catch (err) {
      show.disabled = false;
      area.append(errorBox(err));
    }
  } }, "Show connection details");
  return h("div", {}, show, area);
}

function deleteSection(c, signal) {
  const input = h("input", { name: "confirm-name", autocomplete: "off", spellcheck: "false" });
  const button = h("button", { type: "submit", class: "danger", disabled: true },
    "Delete cluster");
  const feedback = h("div", { "aria-live": "assertive" });
  input.addEventListener("input", () => { button.disabled = input.value !== c.name; });
  return h("section", { "aria-labelledby": "delete-title" },
    h("h2", { id: "delete-title" }, "Delete"),
    h("p", {}, "Deleting stops every node and removes its data; backups stay until their " +
      "retention removes them."),
    feedback,
    h("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      if (input.value !== c.name) return;
      button.disabled = true;
      try {
        await api.del(`/v2/clusters/${c.id}`, { signal });
        announce(`Deleting ${c.name}`);
        input.value = "";
      } catch (err) {
        feedback.replaceChildren(errorBox(err));
        button.disabled = false;
      }
    } }, field(`Type the cluster's name (${c.name}) to confirm`, input), button));
}

function eventsList(events) {
  if (!events.length) return h("p", { class: "muted" }, "No events yet.");
  return h("ol", { class: "events", reversed: true }, events.slice(-50).reverse().map((e) =>
    h("li", {}, when(e.created_at), " ", h("strong", {}, e.kind), ` ${e.message}`)));
}

// Draw `data` into `el` only when it changed since the last poll: text being
// selected or read by a screen reader is not replaced under the person.
const drawn = new WeakMap();
function redraw(el, data, render) {
  const key = JSON.stringify(data ?? null);
  if (drawn.get(el) === key) return;
  drawn.set(el, key);
  replace(el, render(data));
}

// The engine as the cluster's provider offers it: what that provider lacks
// (backups, the pooler on Kubernetes) is no ability of this cluster, so no
// section offers it (older servers name no providers: the engine's own).
function onProvider(engine, provider) {
  const lacks = engine.providers?.find((p) => p.name === provider)?.missing_abilities ?? [];
  return { ...engine, abilities: engine.abilities.filter((a) => !lacks.includes(a)) };
}

export async function clusterView(main, ctx, id, params) {
  const { signal } = ctx;
  const heading = h("h1", {}, "Cluster");
  const overview = h("div");
  const endpoints = h("div");
  const memberArea = h("div");
  const memberFeedback = h("div", { "aria-live": "polite" });
  const switchover = async (m) => {
    memberFeedback.replaceChildren(h("p", { class: "muted" }, "Starting a switchover…"));
    try {
      await api.post(`/v2/clusters/${id}/switchover`, { node_id: m.id }, { signal });
      memberFeedback.replaceChildren(h("p", { class: "notice" },
        `Switchover to node #${m.ordinal} started; its steps are shown under Operation.`));
      announce("Switchover started");
    } catch (err) {
      if (err.name !== "AbortError") memberFeedback.replaceChildren(errorBox(err));
    }
  };
  const opArea = h("div");
  const eventArea = h("div");
  const chartArea = h("div", { id: "cluster-metrics" }); // its charts are redrawn inside it
  const gone = h("div", { "aria-live": "polite" });
  const lower = h("div"); // users, databases, backups, delete: drawn once the cluster is known
  replace(main, h("p", {}, h("a", { href: "#/clusters" }, "← All clusters")), heading, gone,
    overview,
    h("h2", {}, "Endpoints"), endpoints,
    h("h2", {}, "Connect"), connection(id, signal),
    h("h2", {}, "Members"), memberFeedback, memberArea,
    h("h2", {}, "Metrics"), chartArea,
    h("h2", {}, "Operation"), opArea,
    lower,
    h("h2", {}, "Events"), eventArea);

  let engine = null;
  let sizes = null;
  let drawnFor = null; // the status group the lower sections were drawn for
  let lastOp = null;
  let config = null; // the configuration section, told of every change to the cluster
  await ctx.every(POLL_MS, async () => {
    let c;
    try {
      c = await api.get(`/v2/clusters/${id}`, { signal });
    } catch (err) {
      if (err.status === 404 && !engine) {
        replace(main, h("h1", {}, "Cluster not found"), errorBox(err),
          h("p", {}, h("a", { href: "#/clusters" }, "All clusters")));
        ctx.timers.forEach(clearInterval);
        return;
      }
      if (err.status === 404) {
        replace(gone, h("p", { class: "notice" }, "This cluster no longer exists. ",
          h("a", { href: "#/clusters" }, "Back to all clusters")));
        ctx.timers.forEach(clearInterval);
        for (const el of [overview, endpoints, memberArea, opArea, lower]) el.replaceChildren();
        return;
      }
      throw err;
    }
    engine ??= onProvider(await api.get(`/v2/engines/${c.engine}`, { signal }), c.provider);
    sizes ??= (await api.get("/v2/sizes", { signal })).sizes;
    redraw(heading, c.name, () => c.name);
    redraw(overview, c, facts);
    redraw(endpoints, c.endpoints, endpointList);
    redraw(memberArea, [c.status, c.members], () => members(c, switchover));
    if (c.status !== "DELETING") { // a cluster being deleted may be gone by the next call
      const metrics = await api.get(`/v2/clusters/${id}/metrics?since=1h`, { signal });
      redraw(chartArea, { ...metrics, since: null, until: null }, () => charts(metrics));
    }
    const { events } = await api.get(`/v2/clusters/${id}/events?limit=1000`, { signal });
    redraw(eventArea, events, eventsList);
    // The running operation, or else the newest one the events name.
    const opId = c.operation?.id
      ?? [...events].reverse().find((e) => e.operation_id)?.operation_id;
    if (opId && (opId !== lastOp?.id || lastOp.status === "running")) {
      lastOp = await api.get(`/v2/operations/${opId}`, { signal });
    }
    redraw(opArea, lastOp, (op) => op ? operationPanel(op) : h("p", { class: "muted" }, "None."));
    const group = RUNNING.includes(c.status) ? "running" : c.status;
    if (group !== drawnFor) {
      drawnFor = group;
      config = configurationSection(c, engine, signal);
      replace(lower,
        RUNNING.includes(c.status) ? accountsSection(c, engine, signal)
          : h("p", { class: "muted" }, `Users and databases can be managed once the cluster ` +
            `is ACTIVE (it is ${c.status}).`),
        changesSection(c, engine, sizes, signal),
        config,
        RUNNING.includes(c.status) ? featuresSection(c, engine, signal) : null,
        c.status === "DELETING" ? null : guardsSection(c, signal),
        RUNNING.includes(c.status) ? logsSection(c, signal) : null,
        backupsSection(c, engine, signal),
        c.status === "DELETING" ? null : deleteSection(c, signal));
    }
    config?.update(c);
  });
  if (params?.get("show") === "operation") showOperation();
}
