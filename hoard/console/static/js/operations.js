// Operations: every change the API accepts returns one; the console follows it
// (GET /v2/operations/{id}) and draws its steps.

import * as api from "./api.js";
import { h, status, when } from "./dom.js";

const POLL_MS = 1000;

// Resolve with the operation once it is no longer running (or reject on abort).
export async function waitOperation(id, signal) {
  for (;;) {
    const op = await api.get(`/v2/operations/${id}`, { signal });
    if (op.status !== "running") return op;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, POLL_MS);
      signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      }, { once: true });
    });
  }
}

// What a cluster is doing, in words, from the operation that holds it
// (the cluster view's `operation`: {id, kind}).
const DOING = { create: "creating", delete: "deleting", resize: "resizing", scale: "scaling",
  update: "updating", restart: "restarting", stop: "stopping", start: "starting",
  backup: "backing up", restore: "restoring", switchover: "switching over",
  failover: "failing over", promote: "promoting", upgrade: "upgrading",
  pooler: "changing its pooler", "apply-pending": "applying settings" };

export function doing(running) {
  return `${DOING[running.kind] ?? `${running.kind} running`}…`;
}

// A link to the running operation's steps on the cluster's page.
export function runningLink(clusterId, running, onclick) {
  return h("a", { class: "running", href: `#/clusters/${clusterId}?show=operation`,
    title: `Operation ${running.id}`, onclick }, doing(running));
}

export function operationPanel(op) {
  return h("section", { "aria-labelledby": "op-title" },
    h("h3", { id: "op-title" }, `${op.kind}: `, status(op.status), ` ${op.progress}%`),
    h("progress", { max: "100", value: String(op.progress), "aria-label": `${op.kind} progress` }),
    h("ol", { class: "steps" }, op.steps.map((s) =>
      h("li", {}, `${s.name} `, status(s.status), s.detail ? h("span", { class: "muted" },
        ` ${s.detail}`) : null))),
    op.error ? h("p", { class: "error" }, op.error) : null,
    h("p", { class: "muted" }, "Started ", when(op.created_at),
      op.finished_at ? [", finished ", when(op.finished_at)] : null));
}
