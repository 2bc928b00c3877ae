// The clusters list: live status (polled), filters by status, engine and labels,
// and keyset paging that follows the API's `next` link. Filters and the page live
// in the address (#/clusters?status=…&engine=…&label=…&marker=…): shareable.

import * as api from "./api.js";
import { labelList } from "./guards.js";
import { errorBox, field, h, options, replace, status, table } from "./dom.js";
import { runningLink } from "./operations.js";

export const STATUSES = ["BUILDING", "ACTIVE", "DEGRADED", "UPDATING", "STOPPED", "DELETING",
  "FAILED"];
const POLL_MS = 2000;
const PAGE = 20;

export function endpointList(endpoints) {
  if (!endpoints.length) return h("span", { class: "muted" }, "none yet");
  return h("ul", { class: "plain" }, endpoints.map((e) =>
    h("li", {}, h("code", {}, `${e.host}:${e.port}`), ` ${e.role}`)));
}

function row(c) {
  return h("tr", { "data-id": c.id },
    h("th", { scope: "row" }, h("a", { href: `#/clusters/${c.id}` }, c.name)),
    h("td", {}, status(c.status),
      c.operation ? h("div", {}, runningLink(c.id, c.operation)) : null,
      c.status_reason ? h("div", { class: "muted" }, c.status_reason) : null),
    h("td", {}, c.engine),
    h("td", {}, c.version),
    h("td", {}, c.size),
    h("td", {}, String(c.nodes)),
    h("td", {}, labelList(c.labels)),
    h("td", {}, endpointList(c.endpoints)));
}

function filtersForm(params, engines) {
  const statusSelect = h("select", { name: "status" },
    options([["", "any status"], ...STATUSES], params.get("status") || ""));
  const engineSelect = h("select", { name: "engine" },
    options([["", "any engine"], ...engines.map((e) => [e.name, e.display_name])],
      params.get("engine") || ""));
  const labelInput = h("input", { name: "label", autocomplete: "off", spellcheck: "false",
    value: params.get("label") || "" });
  const apply = () => {
    const next = api.query({ status: statusSelect.value, engine: engineSelect.value,
      label: labelInput.value.trim(), limit: params.get("limit") });
    location.hash = `#/clusters${next}`;
  };
  statusSelect.addEventListener("change", apply);
  engineSelect.addEventListener("change", apply);
  labelInput.addEventListener("change", apply);
  return h("form", { class: "inline", role: "search", "aria-label": "Filter clusters",
    onsubmit: (e) => { e.preventDefault(); apply(); } },
  field("Status", statusSelect), field("Engine", engineSelect),
  field("Labels", labelInput, "key=value, comma-separated; Enter applies"));
}

export async function clustersView(main, ctx, params) {
  const { engines } = await api.get("/v2/engines", { signal: ctx.signal });
  const limit = params.get("limit") || PAGE;
  const path = `/v2/clusters${api.query({ limit, marker: params.get("marker"),
    status: params.get("status"), engine: params.get("engine"), label: params.get("label") })}`;
  const body = h("div", { "aria-live": "off" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const feedback = h("div");
  replace(main,
    h("div", { class: "toolbar" },
      h("h1", {}, "Clusters"),
      h("a", { class: "button", href: "#/create" }, "Create cluster")),
    filtersForm(params, engines), feedback, body, pager);

  let shown = "";
  await ctx.every(POLL_MS, async () => {
    let page;
    try {
      page = await api.get(path, { signal: ctx.signal });
      feedback.replaceChildren();
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
      throw err;
    }
    // Redraw only what changed, so polling does not move focus or the scroll.
    const key = JSON.stringify(page);
    if (key === shown) return;
    shown = key;
    if (!page.clusters.length) {
      replace(body, h("p", {}, params.get("marker") ? "No more clusters." :
        "No clusters here yet. ", h("a", { href: "#/create" }, "Create one")));
    } else {
      const focused = document.activeElement?.closest?.("tr")?.dataset?.id;
      replace(body, table("Clusters",
        ["Name", "Status", "Engine", "Version", "Size", "Nodes", "Labels", "Endpoints"],
        page.clusters.map(row)));
      if (focused) body.querySelector(`tr[data-id="${focused}"] a`)?.focus();
    }
    const links = [];
    if (params.get("marker")) {
      links.push(h("a", { href: `#/clusters${api.query({ status: params.get("status"),
        engine: params.get("engine"), label: params.get("label"), limit: params.get("limit") })}` },
      "First page"));
    }
    if (page.next) {
      const marker = new URL(page.next, location.origin).searchParams.get("marker");
      links.push(h("a", { href: `#/clusters${api.query({ status: params.get("status"),
        engine: params.get("engine"), label: params.get("label"), limit: params.get("limit"),
        marker })}` }, "Next page"));
    }
    replace(pager, links);
  });
}
