// The console's entry point: sign in and out, and a hash router that gives each
// view a signal and a poller that stop when the person navigates away.

import * as api from "./api.js";
import { announce, errorBox, field, h, replace } from "./dom.js";
import { adminView } from "./admin.js";
import { clusterView } from "./cluster.js";
import { clustersView } from "./clusters.js";
import { createView } from "./create.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let current = null; // { controller, timers } of the view on screen
let isAdmin = false;
let me = null; // GET /v2/whoami: whose the token is

function context() {
  const controller = new AbortController();
  const timers = [];
  return {
    controller,
    timers,
    signal: controller.signal,
    isAdmin: () => isAdmin,
    // Run fn now and then every `ms` while this view is on screen; a failed
    // refresh is shown once and retried on the next tick.
    every(ms, fn) {
      let busy = false;
      const tick = async () => {
        if (busy || controller.signal.aborted) return;
        busy = true;
        try {
          await fn();
        } catch (err) {
          if (err.name !== "AbortError") console.warn("refresh failed:", err.message);
        } finally {
          busy = false;
        }
      };
      timers.push(setInterval(tick, ms));
      return tick();
    },
  };
}

function leave() {
  if (!current) return;
  current.controller.abort();
  current.timers.forEach(clearInterval);
  current = null;
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(search) };
}

function markNav(name) {
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  leave();
  if (!api.token()) {
    nav.hidden = true;
    signInView();
    return;
  }
  nav.hidden = false;
  document.getElementById("nav-admin").hidden = !isAdmin;
  showWho();
  const { parts, params } = parseHash();
  const ctx = context();
  current = ctx;
  const [first, second] = parts;
  markNav(first === "clusters" && second ? "" : first || "clusters");
  main.replaceChildren();
  try {
    if (first === "create") await createView(main, ctx, params);
    else if (first === "clusters" && second) await clusterView(main, ctx, second, params);
    else if (first === "admin") await adminView(main, ctx);
    else await clustersView(main, ctx, params);
  } catch (err) {
    if (err.name === "AbortError") return;
    replace(main, h("h1", {}, "Something went wrong"), errorBox(err));
  }
  const heading = main.querySelector("h1");
  if (heading) {
    document.title = `${heading.textContent} · Hoard console`;
    // After a navigation, keyboard and screen reader users start at the new
    // page's heading (unless the view put focus somewhere on purpose).
    if (!main.contains(document.activeElement) || document.activeElement === main) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }
}

function signInView(message) {
  document.title = "Sign in · Hoard console";
  const input = h("input", { type: "password", name: "token", autocomplete: "off",
    required: true, spellcheck: "false" });
  const feedback = h("div", { "aria-live": "assertive" }, message ? errorBox(message) : null);
  const form = h("form", { class: "stack", onsubmit: async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    feedback.replaceChildren();
    const value = input.value.trim();
    try {
      me = await api.get("/v2/whoami", { withToken: value });
      isAdmin = me.is_admin;
      api.setToken(value);
      announce("Signed in");
      if (!location.hash || location.hash === "#/signin") location.hash = "#/clusters";
      else route();
      main.focus();
    } catch (err) {
      const text = err.status === 401 ? "That token is not valid: check it and try again." : err;
      feedback.replaceChildren(errorBox(typeof text === "string" ? { message: text } : text));
      button.disabled = false;
      input.focus();
    }
  } },
  field("Token", input, "A project token (or the admin token). It is kept only in this tab."),
  h("button", { type: "submit" }, "Sign in"));
  replace(main, h("h1", {}, "Sign in to Hoard"), feedback, form);
  input.focus();
}

// The header says whose token this tab uses: the project's name, and "admin"
// for an operator's token.
function showWho() {
  const who = document.getElementById("who");
  if (!me) {
    who.replaceChildren();
    return;
  }
  replace(who, "Signed in as ", h("strong", {}, me.project_name),
    me.is_admin ? [" ", h("span", { class: "badge" }, "admin")] : null);
}

function signOut(message) {
  leave();
  api.clearToken();
  isAdmin = false;
  me = null;
  showWho();
  nav.hidden = true;
  history.replaceState(null, "", "#/signin");
  signInView(message);
  announce("Signed out");
}

document.getElementById("sign-out").addEventListener("click", () => signOut());
api.onUnauthorized(() => signOut({ message: "Your token is no longer valid: sign in again." }));
window.addEventListener("hashchange", route);

async function start() {
  if (api.token()) {
    try {
      me = await api.get("/v2/whoami", { withToken: api.token() });
      isAdmin = me.is_admin;
    } catch {
      me = null;
      isAdmin = false;
    }
  }
  route();
}

start();
