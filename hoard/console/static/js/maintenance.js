// A cluster's maintenance window: when Hoard restarts it itself to apply settings
// that wait for a restart. PATCH {"maintenance_window"} is applied at once (200, no
// operation); null removes it. The API judges every value.

import * as api from "./api.js";
import { announce, errorBox, field, h, options, replace } from "./dom.js";

const DAYS = [["daily", "Every day"], ["mon", "Monday"], ["tue", "Tuesday"],
  ["wed", "Wednesday"], ["thu", "Thursday"], ["fri", "Friday"], ["sat", "Saturday"],
  ["sun", "Sunday"]];

// "Every day at 03:00 UTC, for 60 minutes", or null when there is no window.
export function describeWindow(w) {
  if (!w) return null;
  const day = DAYS.find(([value]) => value === w.day)?.[1] ?? w.day;
  return `${day} at ${w.start} UTC, for ${w.duration_minutes} minutes`;
}

export function windowSection(c, signal) {
  const feedback = h("div", { "aria-live": "polite" });
  const now = h("p", { id: "window-now" });
  const day = h("select", { name: "window-day" }, options(DAYS, "daily"));
  const start = h("input", { name: "window-start", autocomplete: "off", spellcheck: "false",
    value: "03:00" });
  const minutes = h("input", { name: "window-minutes", type: "number", inputmode: "numeric",
    value: "60" });
  let current = c.maintenance_window;
  const show = () => {
    replace(now, current ? `Window: ${describeWindow(current)}.`
      : "No window: settings that wait for a restart wait until you restart the cluster.");
    if (current) {
      day.value = current.day;
      start.value = current.start;
      minutes.value = String(current.duration_minutes);
    }
  };
  const save = async (window, done) => {
    try {
      const view = await api.patch(`/v2/clusters/${c.id}`, { maintenance_window: window },
        { signal });
      current = view.cluster.maintenance_window;
      show();
      feedback.replaceChildren(h("p", { class: "notice" }, done));
      announce(done);
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    }
  };
  const form = h("form", { class: "inline", "aria-label": "Maintenance window", novalidate: true,
    onsubmit: (event) => {
      event.preventDefault();
      save({ day: day.value, start: start.value, duration_minutes: Number(minutes.value) },
        "Maintenance window saved.");
    } },
  field("Window day", day),
  field("Opens at (UTC)", start, "HH:MM, e.g. 03:00"),
  field("Minutes open", minutes, "30 to 480"),
  h("button", { type: "submit" }, "Save window"));
  const remove = h("button", { type: "button", class: "secondary",
    onclick: () => save(null, "Maintenance window removed.") }, "Remove window");
  show();
  return h("section", { "aria-labelledby": "window-title" },
    h("h3", { id: "window-title" }, "Maintenance window"),
    h("p", { class: "hint" }, "Hoard restarts the cluster in this window to apply settings " +
      "that wait for a restart."),
    feedback, now, form, h("p", {}, remove));
}
