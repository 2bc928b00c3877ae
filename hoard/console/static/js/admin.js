// The operator's view (admin token): projects with quotas and usage, create a
// project, and issue a project token (shown once, as the API shows it once).

import * as api from "./api.js";
import { announce, errorBox, field, h, replace, table, when } from "./dom.js";

const quota = (p, k) => `${p.usage[k]} / ${p.quotas[k]}`;

export async function adminView(main, ctx) {
  const { signal } = ctx;
  const area = h("div");
  const feedback = h("div", { "aria-live": "polite" });

  async function refresh() {
    const projects = await api.get("/v2/projects", { signal });
    replace(area, table("Projects", ["Project", "Clusters", "Nodes", "Storage (GB)", "Created",
      "Tokens"], projects.map((p) => h("tr", {},
      h("th", { scope: "row" }, p.name, h("div", {}, h("code", { class: "muted" }, p.id))),
      h("td", {}, quota(p, "clusters")),
      h("td", {}, quota(p, "nodes")),
      h("td", {}, quota(p, "storage_gb")),
      h("td", {}, when(p.created_at)),
      h("td", {}, h("button", { type: "button", class: "secondary",
        "aria-label": `New token for ${p.name}`, onclick: async () => {
          try {
            const t = await api.post(`/v2/projects/${p.id}/tokens`, { description: "console" });
            feedback.replaceChildren(h("div", { class: "notice", role: "status" },
              h("p", {}, `Token for ${p.name} (shown only now; store it safely): `,
                h("code", { class: "secret" }, t.token))));
          } catch (err) {
            feedback.replaceChildren(errorBox(err));
          }
        } }, "New token"))))));
  }

  const name = h("input", { name: "project-name", required: true, autocomplete: "off" });
  const numbers = ["clusters", "nodes", "storage_gb"].map((k) =>
    h("input", { name: `quota-${k}`, type: "number", min: "0", inputmode: "numeric" }));
  const form = h("form", { class: "inline", "aria-label": "Create a project",
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { name: name.value.trim() };
      const [clusters, nodes, storage] = numbers.map((n) => n.value);
      if (clusters || nodes || storage) {
        body.quotas = { clusters: Number(clusters || 0), nodes: Number(nodes || 0),
          storage_gb: Number(storage || 0) };
      }
      try {
        const p = await api.post("/v2/projects", body);
        feedback.replaceChildren(h("p", { class: "notice" }, `Project ${p.name} created.`));
        announce(`Project ${p.name} created`);
        form.reset();
        await refresh();
      } catch (err) {
        feedback.replaceChildren(errorBox(err));
      }
    } },
  field("Project name", name),
  field("Clusters quota", numbers[0], "Empty: the defaults"),
  field("Nodes quota", numbers[1]),
  field("Storage quota (GB)", numbers[2]),
  h("button", { type: "submit" }, "Create project"));

  replace(main, h("h1", {}, "Projects"), feedback, area,
    h("h2", {}, "Create a project"), form);
  await refresh();
}
