// A cluster's backup schedule and retention: GET /v2/clusters/{id}/backup-schedule
// shows it (null: none), PUT sets it, DELETE removes it. ``verify`` proves the newest
// backup restorable on its own schedule (daily, weekly or a cron).

import * as api from "./api.js";
import { announce, errorBox, field, h, replace } from "./dom.js";

function describe(s) {
  if (!s) return h("p", { class: "muted", id: "schedule-now" }, "No schedule.");
  return h("p", { id: "schedule-now" }, "Backs up at ", h("code", {}, s.cron),
    ` (UTC), keeping the newest ${s.keep_last}`,
    s.keep_days ? ` and nothing older than ${s.keep_days} days` : "", ".",
    s.verify ? ` Verifies the newest backup ${["daily", "weekly"].includes(s.verify)
      ? s.verify : "at " + s.verify} (restored into a throwaway node and checked).` : "");
}

export function scheduleSection(c, signal) {
  const feedback = h("div", { "aria-live": "polite" });
  const now = h("div");
  const cron = h("input", { name: "schedule-cron", autocomplete: "off", spellcheck: "false",
    value: "0 3 * * *" });
  const keepLast = h("input", { name: "schedule-keep-last", type: "number", inputmode: "numeric",
    value: "7" });
  const keepDays = h("input", { name: "schedule-keep-days", type: "number",
    inputmode: "numeric", value: "" });
  const verify = h("input", { name: "schedule-verify", autocomplete: "off",
    spellcheck: "false", value: "" });
  const show = (s) => {
    replace(now, describe(s));
    if (s) {
      cron.value = s.cron;
      keepLast.value = String(s.keep_last);
      keepDays.value = s.keep_days ? String(s.keep_days) : "";
      verify.value = s.verify || "";
    }
  };
  const load = async () => {
    try {
      show(await api.call("GET", `/v2/clusters/${c.id}/backup-schedule`, undefined, { signal }));
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    }
  };

  const form = h("form", { class: "inline", "aria-label": "Backup schedule", novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { cron: cron.value, keep_last: Number(keepLast.value),
        keep_days: keepDays.value === "" ? null : Number(keepDays.value),
        verify: verify.value.trim() === "" ? null : verify.value.trim() };
      try {
        show(await api.call("PUT", `/v2/clusters/${c.id}/backup-schedule`, body, { signal }));
        feedback.replaceChildren(h("p", { class: "notice" }, "Schedule saved."));
        announce("Backup schedule saved");
      } catch (err) {
        if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
      }
    } },
  field("Schedule (cron, UTC)", cron, "e.g. 0 3 * * * for 03:00 every day"),
  field("Keep the newest", keepLast, "backups, 1 to 1000"),
  field("Keep days", keepDays, "empty: no age limit"),
  field("Verify the newest backup", verify, "daily, weekly or a cron (UTC); empty: never"),
  h("button", { type: "submit" }, "Save schedule"));

  const remove = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await api.del(`/v2/clusters/${c.id}/backup-schedule`, { signal });
      show(null);
      feedback.replaceChildren(h("p", { class: "notice" }, "Schedule removed."));
      announce("Backup schedule removed");
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    }
  } }, "Remove schedule");
  show(null);
  load();
  return h("section", { "aria-labelledby": "schedule-title" },
    h("h3", { id: "schedule-title" }, "Schedule and retention"),
    feedback, now, form, h("p", {}, remove));
}
