// A node's log on the cluster page (GET /v2/clusters/{id}/logs): the server's
// log or its slow-query log, the newest entries, read when asked (no following).

import * as api from "./api.js";
import { errorBox, field, h, options, replace, when } from "./dom.js";

export function logsSection(c, signal) {
  const kind = h("select", { name: "log-kind" },
    options([["server", "server log"], ["slow", "slow queries"]], "server"));
  const node = h("select", { name: "log-node" }, options([["", "the primary"],
    ...c.members.map((m) => [m.id, `#${m.ordinal} ${m.role}`])], ""));
  const limit = h("input", { name: "log-limit", type: "number", min: "1", max: "1000",
    value: "100", inputmode: "numeric" });
  const area = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Show log");
  const form = h("form", { class: "inline", "aria-label": "Logs", novalidate: true,
    onsubmit: async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      const page = await api.get(`/v2/clusters/${c.id}/logs${api.query({ kind: kind.value,
        node: node.value, limit: limit.value })}`, { signal });
      replace(area, page.lines.length ? h("ol", { class: "log", tabindex: "0",
        "aria-label": `${page.kind} log, oldest first` }, page.lines.map((l) =>
        h("li", {}, l.time ? when(l.time) : null, " ", h("code", {}, l.line))))
        : h("p", { class: "muted" }, "Nothing logged yet."),
      page.truncated ? h("p", { class: "muted" }, `Only the newest ${page.limit} entries.`)
        : null);
    } catch (err) {
      if (err.name !== "AbortError") replace(area, errorBox(err));
    } finally {
      button.disabled = false;
    }
  } },
  field("Which log", kind), field("Log of node", node), field("Entries", limit, "The newest, up to 1,000"),
  button);
  return h("section", { "aria-labelledby": "logs-title" },
    h("h2", { id: "logs-title" }, "Logs"), form, area);
}
