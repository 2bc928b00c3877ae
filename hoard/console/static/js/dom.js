// Small DOM helpers. Text always goes in as text nodes: no HTML is built from data.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A status word styled by its value (colour is never the only signal: the word is shown).
export function status(value) {
  return h("span", { class: `status status-${value}` }, value);
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return h("time", { datetime: iso, title: iso }, date.toLocaleString());
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

// A problem+json refusal shown next to the form that caused it.
export function errorBox(error) {
  const items = error?.problem?.errors || [];
  return h("div", { class: "error", role: "alert" },
    h("strong", {}, error.message || String(error)),
    items.length > 1 ? h("ul", {}, items.map((e) => h("li", {}, `${e.field}: ${e.message}`))) : null);
}

// Say something to screen readers without moving focus.
export function announce(text) {
  const region = document.getElementById("announce");
  if (region) region.textContent = text;
}

export function table(caption, headers, rows) {
  // Each cell names its column too: on a narrow screen rows stack as cards.
  for (const row of rows) {
    [...row.children].forEach((cell, i) => cell.setAttribute("data-label", headers[i] ?? ""));
  }
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)));
}

let ids = 0;
// A labelled form control: <label for> + the control (+ an optional hint that
// describes it), so the label's name is its text alone.
export function field(text, control, hint) {
  ids += 1;
  if (!control.id) control.id = `field-${ids}`;
  const parts = [h("label", { for: control.id }, text), control];
  if (hint) {
    const hintId = `hint-${ids}`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("span", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

export function options(values, selected) {
  return values.map((v) => {
    const [value, text] = Array.isArray(v) ? v : [v, v];
    return h("option", { value, selected: value === selected }, text);
  });
}
