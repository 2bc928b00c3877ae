// A cluster's backups: the list with size and status, the restorable window (as a
// timeline), take one now, restore one into a new cluster (through the create
// form), and the schedule with its retention.

import * as api from "./api.js";
import { announce, bytes, errorBox, field, h, replace, status, table, when } from "./dom.js";
import { waitOperation } from "./operations.js";
import { scheduleSection } from "./schedule.js";
import { timeline } from "./timeline.js";

// A datetime-local value (the browser's time zone) for an ISO time, to the second.
function local(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// The restorable window, and a restore to a chosen second inside it (through
// the create form, which the API judges).
function pointInTime(c, window) {
  const time = h("input", { name: "restore-time", type: "datetime-local", step: "1",
    min: local(window.earliest), max: local(window.latest), value: local(window.latest),
    required: true });
  const drawing = timeline(window);
  time.addEventListener("input", () => drawing.mark(new Date(time.value)));
  return h("div", {},
    h("p", {}, "Restorable to any second from ", when(window.earliest), " to ",
      when(window.latest), "."),
    h("figure", { class: "timeline-wrap" }, drawing),
    h("form", { class: "inline", "aria-label": "Restore to a point in time",
      onsubmit: (event) => {
        event.preventDefault();
        // Left at its default: the window's end exactly (the field shows whole seconds).
        const iso = time.value === local(window.latest) ? window.latest
          : new Date(time.value).toISOString();
        location.hash = `#/create?${new URLSearchParams({ restore_cluster: c.id, time: iso,
          name: `${c.name}-then` })}`;
      } },
    field("Restore to (your time zone)", time),
    h("button", { type: "submit" }, "Restore to this time in a new cluster")));
}

export function backupsSection(c, engine, signal) {
  if (!engine.abilities.includes("backups")) return null;
  const area = h("div");
  const feedback = h("div", { "aria-live": "polite" });

  let latest = 0; // a slower, older answer must not overwrite a newer one
  async function refresh() {
    const mine = ++latest;
    const page = await api.get(`/v2/backups${api.query({ cluster_id: c.id, limit: 1000 })}`,
      { signal });
    if (mine !== latest) return page.backups;
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
      page.restorable && engine.abilities.includes("point-in-time restore")
        ? pointInTime(c, page.restorable) : null,
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
    ["ACTIVE", "DEGRADED"].includes(c.status) ? take : null, area,
    // A cluster being deleted may be gone before its schedule is read; its backups stay.
    c.status === "DELETING" ? null : scheduleSection(c, signal));
}
