// middock's dashboard: live updates, written with textContent only (nothing from a push is ever
// parsed as HTML), and a confirmation before any action.
"use strict";

function appendLine(pre, text) {
  pre.appendChild(document.createTextNode(text + "\n"));
  pre.scrollTop = pre.scrollHeight;
}

const sources = []; // every stream of the page, closed when an action leaves it

function stream(url, handlers) {
  const source = new EventSource(url);
  sources.push(source);
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => handle(JSON.parse(event.data), source));
  }
  return source;
}

function confirmActions() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      // The action's own deploy would make the page reload itself, and so drop the answer.
      for (const source of sources) source.close();
    });
  }
}

function followApps(table) {
  stream(table.dataset.events, {
    app: (row) => {
      const line = table.querySelector(`tr[data-app="${CSS.escape(row.name)}"]`);
      if (!line) return;
      for (const cell of line.querySelectorAll("[data-field]")) {
        const value = row[cell.dataset.field];
        if (typeof value === "string") cell.textContent = value;
      }
    },
  });
}

function followApp(heading) {
  const section = document.getElementById("deploy");
  const output = document.getElementById("deploy-output");
  stream(heading.dataset.events, {
    line: (line) => {
      section.hidden = false;
      document.getElementById("deploy-number").textContent = String(line.release);
      appendLine(output, line.text);
    },
    changed: (_, source) => {
      source.close();
      window.location.reload();
    },
  });
}

function followOutput(pre) {
  stream(pre.dataset.stream, {
    line: (line) => appendLine(pre, line.text),
    done: (_, source) => source.close(),
  });
}

function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

async function showStats(table) {
  const note = document.getElementById("stats-note");
  const answer = await fetch(table.dataset.stats, { credentials: "same-origin" });
  const found = await answer.json();
  if (found.error || !found.measured) {
    note.hidden = false;
    note.textContent = found.error
      ? `CPU and memory: Docker did not answer (${found.error})`
      : "CPU and memory are not measured by this Docker engine (rootless Docker on a kernel with cgroup v1).";
  }
  for (const row of table.querySelectorAll("tr[data-container]")) {
    const usage = (found.containers || {})[row.dataset.container];
    row.querySelector('[data-field="cpu"]').textContent = usage && usage.cpu !== null ? `${usage.cpu.toFixed(1)} %` : "-";
    row.querySelector('[data-field="memory"]').textContent = usage && usage.memory !== null ? size(usage.memory) : "-";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  confirmActions();
  const apps = document.getElementById("apps");
  if (apps) followApps(apps);
  const app = document.getElementById("app");
  if (app) followApp(app);
  for (const pre of document.querySelectorAll("pre[data-stream]")) followOutput(pre);
  const containers = document.getElementById("containers");
  if (containers && containers.querySelector("tr[data-container]")) showStats(containers);
});
