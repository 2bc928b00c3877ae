// Users and databases of a running cluster: list, create, rotate a password,
// delete. A password the API returns is shown once, as the API shows it once.

import * as api from "./api.js";
import { announce, errorBox, field, h, replace, table } from "./dom.js";
import { waitOperation } from "./operations.js";

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

// The result of a change: wait for its operation if it is still running.
async function settle(result, signal) {
  const op = result.operation.status === "running"
    ? await waitOperation(result.operation.id, signal) : result.operation;
  if (op.status === "failed") throw new Error(op.error || `${op.kind} failed`);
  return op;
}

function secretNotice(user, password) {
  return h("div", { class: "notice", role: "status" },
    h("p", {}, `Password for ${user} (shown only now): `, h("code", { class: "secret" }, password)));
}

// A two-step delete button: the first press asks, the second does it.
function confirmButton(label, onConfirm) {
  const wrap = h("span");
  const ask = () => replace(wrap, `${label}? `,
    h("button", { type: "button", class: "danger", onclick: onConfirm }, "Yes, delete"), " ",
    h("button", { type: "button", class: "secondary", onclick: () => {
      replace(wrap, start);
      start.focus();
    } }, "No"));
  const start = h("button", { type: "button", class: "secondary", "aria-label": label,
    onclick: () => { ask(); wrap.querySelector("button").focus(); } }, "Delete");
  wrap.append(start);
  return wrap;
}

function usersSection(c, engine, signal) {
  const base = `/v2/clusters/${c.id}/users`;
  const sql = engine.abilities.includes("databases");
  const area = h("div");
  const feedback = h("div", { "aria-live": "polite" });

  const userPath = (u) => `${base}/${encodeURIComponent(u)}`;

  // SQL users: each granted database with its revoke button.
  function grants(u) {
    if (!u.databases.length) return h("span", { class: "muted" }, "none");
    return u.databases.map((d) => h("span", { class: "grant" }, `${d} `,
      h("button", { type: "button", class: "secondary", "aria-label": `Revoke ${d} from ${u.name}`,
        onclick: () => act(async () => {
          await settle(await api.del(`${userPath(u.name)}/databases/${encodeURIComponent(d)}`),
            signal);
          announce(`${u.name} no longer has ${d}`);
        }) }, "Revoke"), " "));
  }

  function grantForm(users) {
    const who = h("select", { name: "grant-user" }, users.map((u) => h("option", {}, u.name)));
    const what = h("input", { name: "grant-database", required: true, autocomplete: "off" });
    return h("form", { class: "inline", "aria-label": "Grant a database", onsubmit: (e) => {
      e.preventDefault();
      act(async () => {
        const path = `${userPath(who.value)}/databases/${encodeURIComponent(what.value.trim())}`;
        await settle(await api.call("PUT", path, {}, { signal }), signal);
        announce(`${who.value} has ${what.value}`);
      });
    } }, field("Grant to user", who), field("Database to grant", what),
    h("button", { type: "submit" }, "Grant"));
  }

  let latest = 0; // a slower, older answer must not overwrite a newer one
  async function refresh() {
    const mine = ++latest;
    const { users } = await api.get(base, { signal });
    if (mine !== latest) return;
    if (!users.length) {
      replace(area, h("p", { class: "muted" }, "No users yet."));
      return;
    }
    replace(area, table("Users", ["User", sql ? "Databases" : "Access", "Actions"],
      users.map((u) => h("tr", {},
        h("th", { scope: "row" }, u.name),
        h("td", {}, sql ? grants(u)
          : `keys ${u.keys.join(" ")}; commands ${u.categories.join(", ")}`),
        h("td", {},
          h("button", { type: "button", class: "secondary",
            "aria-label": `Rotate password of ${u.name}`, onclick: () => act(async () => {
              const result = await api.post(`${userPath(u.name)}/actions/rotate-password`);
              await settle(result, signal);
              return secretNotice(u.name, result.user.password);
            }) }, "Rotate password"), " ",
          confirmButton(`Delete user ${u.name}`, () => act(async () => {
            await settle(await api.del(userPath(u.name)), signal);
            announce(`User ${u.name} deleted`);
            return null;
          })))))),
    sql ? grantForm(users) : null);
  }

  // The outcome is shown once the list is redrawn: what it says is on screen.
  async function act(work) {
    feedback.replaceChildren(h("p", { class: "muted" }, "Working…"));
    try {
      const shown = await work();
      await refresh();
      feedback.replaceChildren(shown || "");
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    }
  }

  const name = h("input", { name: "user-name", required: true, autocomplete: "off" });
  const extra = sql
    ? [h("input", { name: "user-databases", autocomplete: "off" })]
    : [h("input", { name: "user-keys", autocomplete: "off", placeholder: "*" }),
      h("input", { name: "user-categories", autocomplete: "off", placeholder: "read, write" })];
  const form = h("form", { class: "inline", "aria-label": "Create a user", onsubmit: (event) => {
    event.preventDefault();
    const body = { name: name.value.trim() };
    if (sql) body.databases = list(extra[0].value);
    else {
      body.keys = list(extra[0].value);
      body.categories = list(extra[1].value);
    }
    act(async () => {
      const result = await api.post(base, body);
      await settle(result, signal);
      form.reset();
      announce(`User ${body.name} created`);
      return secretNotice(result.user.name, result.user.password);
    });
  } },
  field("User name", name),
  sql ? field("Grant databases", extra[0], "Comma-separated; full access to each")
    : [field("Key patterns", extra[0], "Comma-separated; default *"),
      field("Command categories", extra[1], "Comma-separated; default read, write")],
  h("button", { type: "submit" }, "Create user"));

  refresh().catch((err) => {
    if (err.name !== "AbortError") area.replaceChildren(errorBox(err));
  });
  return h("section", { "aria-labelledby": "users-title" },
    h("h2", { id: "users-title" }, "Users"), feedback, area, form);
}

function databasesSection(c, signal) {
  const base = `/v2/clusters/${c.id}/databases`;
  const area = h("div");
  const feedback = h("div", { "aria-live": "polite" });
  let latest = 0;
  async function refresh() {
    const mine = ++latest;
    const { databases } = await api.get(base, { signal });
    if (mine !== latest) return;
    replace(area, databases.length ? table("Databases", ["Database", "Charset", "Collation", "Actions"],
      databases.map((d) => h("tr", {}, h("th", { scope: "row" }, d.name), h("td", {}, d.charset),
        h("td", {}, d.collation),
        h("td", {}, confirmButton(`Delete database ${d.name}`, () => act(async () => {
          await settle(await api.del(`${base}/${encodeURIComponent(d.name)}`), signal);
          announce(`Database ${d.name} deleted`);
        }))))))
      : h("p", { class: "muted" }, "No databases yet."));
  }
  async function act(work) {
    feedback.replaceChildren(h("p", { class: "muted" }, "Working…"));
    try {
      await work();
      await refresh();
      feedback.replaceChildren();
    } catch (err) {
      if (err.name !== "AbortError") feedback.replaceChildren(errorBox(err));
    }
  }
  const name = h("input", { name: "database-name", required: true, autocomplete: "off" });
  const form = h("form", { class: "inline", "aria-label": "Create a database", onsubmit: (e) => {
    e.preventDefault();
    act(async () => {
      await settle(await api.post(base, { name: name.value.trim() }), signal);
      announce(`Database ${name.value} created`);
      form.reset();
    });
  } }, field("Database name", name), h("button", { type: "submit" }, "Create database"));
  refresh().catch((err) => {
    if (err.name !== "AbortError") area.replaceChildren(errorBox(err));
  });
  return h("section", { "aria-labelledby": "databases-title" },
    h("h2", { id: "databases-title" }, "Databases"), feedback, area, form);
}

export function accountsSection(c, engine, signal) {
  return h("div", {},
    engine.abilities.includes("users") ? usersSection(c, engine, signal) : null,
    engine.abilities.includes("databases") ? databasesSection(c, signal) : null);
}
