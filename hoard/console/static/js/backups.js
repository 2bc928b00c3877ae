// A cluster's backups: the list with size and status, the restorable window,
// take one now, and restore one into a new cluster (through the create form).

import * as api from "./api.js";
import { announce, bytes, errorBox, h, replace, status, table, when } from "./dom.js";
import { waitOperation } from "./operations.js";

export function backupsSection(c, engine, signal) {
  if (!engine.abilities.includes("backups")) return null;
  const area = h("div");
  const feedback = h("div", { "aria-live": "polite" });

  async function refresh() {
    const page = await api.get(`/v2/backups${api.query({ cluster_id: c.id, limit: 1000 })}`,
      { signal });
    const rows = [...page.backups].reverse().map((b) => h("tr", {},
      h("th", { scope: "row" }, when(b.created_at)),
      h("td", {}, b.kind),
      h("td", {}, status(b.status), b.error ? h("div", { class: "muted" }, b.error) : null),
      h("td", {}, bytes(b.size_bytes)),
      h("td", {}, b.reason),
      h("td", {}, b.status === "available" ? h("a", {
        href: `#/create?${new URLSearchParams({ restore: b.id, name: `${c.name}-restored` })}`,
        "aria-label": "Restore into a new cluster: the backup of " +
          new Date(b.created_at).toLocaleString() }, "Restore into a new cluster") : "")));
    replace(area,
      page.restorable ? h("p", {}, "Restorable from ", when(page.restorable.earliest), " to ",
        when(page.restorable.latest)) : null,
      rows.length ? table("Backups", ["Taken", "Kind", "Status", "Size", "Reason", "Restore"], rows)
        : h("p", { class: "muted" }, "No backups yet."));
    return page.backups;
  }

  const take = h("button", { type: "button", onclick: async () => {
    take.disabled = true;
    feedback.replaceChildren(h("p", { class: "muted" }, "Taking a backup…"));
    try {
      const accepted = await api.post(`/v2/clusters/${c.id}/backups`, { kind: "full" });
      await refresh();
      const op = await waitOperation(accepted.operation.id, signal);
      if (op.status === "failed") throw new Error(op.error || "the backup failed");
      feedback.replaceChildren(h("p", { class: "notice" }, "Backup taken."));
      announce("Backup taken");
      await refresh();
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    } finally {
      take.disabled = false;
    }
  } }, "Take a backup");

  refresh().catch((err) => {
    if (err.name !== "AbortError") area.replaceChildren(errorBox(err));
  });
  return h("section", { "aria-labelledby": "backups-title" },
    h("h2", { id: "backups-title" }, "Backups"), feedback,
    ["ACTIVE", "DEGRADED"].includes(c.status) ? take : null, area);
}
