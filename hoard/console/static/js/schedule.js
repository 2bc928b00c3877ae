// A cluster's backup schedule and retention: PUT /v2/clusters/{id}/backup-schedule
// sets it, DELETE removes it. /v2 has no way to read a schedule back, so the page
// shows what was last set from this browser tab (kept in its sessionStorage).

import * as api from "./api.js";
import { announce, errorBox, field, h, replace } from "./dom.js";

const key = (id) => `hoard.schedule.${id}`;

function remembered(id) {
  try {
    return JSON.parse(sessionStorage.getItem(key(id)) || "null");
  } catch {
    return null;
  }
}

function describe(s) {
  if (!s) return h("p", { class: "muted", id: "schedule-now" }, "None set from this tab.");
  return h("p", { id: "schedule-now" }, "Last set from this tab: ", h("code", {}, s.cron),
    ` (UTC), keeping the newest ${s.keep_last}`,
    s.keep_days ? ` and nothing older than ${s.keep_days} days` : "", ".");
}

export function scheduleSection(c, signal) {
  const feedback = h("div", { "aria-live": "polite" });
  const now = h("div");
  const show = () => replace(now, describe(remembered(c.id)));
  const last = remembered(c.id);
  const cron = h("input", { name: "schedule-cron", autocomplete: "off", spellcheck: "false",
    value: last?.cron || "0 3 * * *" });
  const keepLast = h("input", { name: "schedule-keep-last", type: "number", inputmode: "numeric",
    value: String(last?.keep_last ?? 7) });
  const keepDays = h("input", { name: "schedule-keep-days", type: "number",
    inputmode: "numeric", value: last?.keep_days ? String(last.keep_days) : "" });

  const form = h("form", { class: "inline", "aria-label": "Backup schedule", novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { cron: cron.value, keep_last: Number(keepLast.value),
        keep_days: keepDays.value === "" ? null : Number(keepDays.value) };
      try {
        const saved = await api.call("PUT", `/v2/clusters/${c.id}/backup-schedule`, body,
          { signal });
        sessionStorage.setItem(key(c.id), JSON.stringify(saved));
        show();
        feedback.replaceChildren(h("p", { class: "notice" }, "Schedule saved."));
        announce("Backup schedule saved");
      } catch (err) {
        if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
      }
    } },
  field("Schedule (cron, UTC)", cron, "e.g. 0 3 * * * for 03:00 every day"),
  field("Keep the newest", keepLast, "backups, 1 to 1000"),
  field("Keep days", keepDays, "empty: no age limit"),
  h("button", { type: "submit" }, "Save schedule"));

  const remove = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await api.del(`/v2/clusters/${c.id}/backup-schedule`, { signal });
      sessionStorage.removeItem(key(c.id));
      show();
      feedback.replaceChildren(h("p", { class: "notice" }, "Schedule removed."));
      announce("Backup schedule removed");
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    }
  } }, "Remove schedule");
  show();
  return h("section", { "aria-labelledby": "schedule-title" },
    h("h3", { id: "schedule-title" }, "Schedule and retention"),
    h("p", { class: "muted" }, "Hoard does not report a cluster's schedule back, so this shows " +
      "what was last set from this browser tab."),
    feedback, now, form, h("p", {}, remove));
}
