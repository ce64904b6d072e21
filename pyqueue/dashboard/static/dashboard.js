// pyqueue dashboard: keeps each page fresh by polling the JSON API.
// Everything from the database goes into the page as text (textContent),
// never as HTML, so a payload or an error cannot inject markup, and through
// visible(), so a bidi control cannot reorder what is read.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";

// The same characters as pyqueue/visible.py, spelled out the same way.
const HIDDEN = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\x00-\x08\x0b-\x1f\x7f-\x9f]/g;
const visible = (text) => String(text ?? "").replace(/\r\n/g, "\n").replace(HIDDEN,
  (c) => `<U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}>`);

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : visible(child));
  }
  return node;
}

// The same formats as the server's Jinja filters (pages.py: when, age, first_line).
const when = (iso) => (iso ? iso.slice(0, 19).replace("T", " ") : "");
const firstLine = (text) => (text && text.trim() ? text.trim().split("\n")[0] : "");
const pretty = (value) => JSON.stringify(value, null, 2);
function age(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

function badge(job) {
  return el("span", { class: `badge badge-${job.status}` }, job.status);
}

function csrfForm(action, label) {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  return el("form", { method: "post", action },
    el("input", { type: "hidden", name: "csrf_token", value: token }),
    el("button", { type: "submit" }, label));
}

function fillRows(tbody, rows, columns, makeRow) {
  tbody.replaceChildren(...(rows.length ? rows.map(makeRow)
    : [el("tr", { class: "empty" }, el("td", { colspan: columns }, "Nothing here."))]));
}

// Polling: fetch every URL, redraw only when an answer changed.
function poll(urls, render) {
  const live = document.getElementById("live");
  let last = null;
  async function tick() {
    try {
      const answers = await Promise.all(urls.map(async (url) => {
        const response = await fetch(url, { headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
        return response.text();
      }));
      const joined = answers.join("\n");
      if (joined !== last) {
        last = joined;
        render(...answers.map((text) => JSON.parse(text)));
      }
      live.classList.remove("offline");
      live.textContent = `live · ${new Date().toLocaleTimeString([], { hour12: false })}`;
    } catch (error) {
      live.classList.add("offline");
      live.textContent = "offline, retrying";
    }
    setTimeout(tick, POLL_MS);
  }
  tick();
}

// Overview ------------------------------------------------------------------

const COUNT_COLUMNS = ["pending", "due", "retrying", "running", "completed", "cancelled", "dead"];

function renderQueues(data) {
  for (const tile of document.querySelectorAll("[data-total]")) {
    const column = tile.dataset.total;
    tile.textContent = data.queues.reduce((sum, q) => sum + q[column], 0);
  }
  fillRows(document.querySelector("#queues tbody"), data.queues, 10, (q) =>
    el("tr", {},
      el("td", {}, el("a", { href: `/jobs?queue=${encodeURIComponent(q.queue)}` }, q.queue)),
      ...COUNT_COLUMNS.map((c) => el("td", { class: "num" }, q[c])),
      el("td", { class: "num" }, age(q.oldest_due_age)),
      el("td", {},
        ...(q.paused ? [el("span", { class: "badge badge-paused" }, "paused")] : []),
        csrfForm(`/queues/${encodeURIComponent(q.queue)}/${q.paused ? "resume" : "pause"}`,
          q.paused ? "Resume" : "Pause"))));
}

function renderChart(data) {
  const svg = document.getElementById("chart");
  const minutes = data.minutes;
  const [W, H, left, right, top, bottom] = [720, 200, 40, 8, 10, 24];
  const most = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
  const step = Math.pow(10, Math.floor(Math.log10(most)));
  const ceiling = Math.ceil(most / step) * step;
  const y = (v) => top + (H - top - bottom) * (1 - v / ceiling);
  const slot = (W - left - right) / Math.max(minutes.length, 1);
  const parts = [];
  for (const v of [0, ceiling / 2, ceiling]) {
    parts.push(el("svg:line", { class: "axis", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
    parts.push(el("svg:text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" },
      Number.isInteger(v) ? v : v.toFixed(1)));
  }
  minutes.forEach((m, i) => {
    const x = left + i * slot + slot * 0.15;
    const width = slot * 0.7;
    const title = `${when(m.minute).slice(11, 16)}: ${m.completed} completed, ${m.failed} failed`;
    if (m.completed) {
      parts.push(el("svg:rect", { class: "bar-done", x, width, y: y(m.completed),
        height: y(0) - y(m.completed) }, el("svg:title", {}, title)));
    }
    if (m.failed) {
      parts.push(el("svg:rect", { class: "bar-failed", x, width,
        y: y(m.completed + m.failed), height: y(m.completed) - y(m.completed + m.failed) },
        el("svg:title", {}, title)));
    }
    if ((i % 10 === 0 && i <= minutes.length - 6) || i === minutes.length - 1) {
      const anchor = i === 0 ? "start" : i === minutes.length - 1 ? "end" : "middle";
      const at = i === 0 ? x : i === minutes.length - 1 ? x + width : x + width / 2;
      parts.push(el("svg:text", { x: at, y: H - 6, "text-anchor": anchor },
        when(m.minute).slice(11, 16)));
    }
  });
  svg.replaceChildren(...parts);
}

// Jobs, one job, dead letters --------------------------------------------------

function renderJobs(data) {
  fillRows(document.querySelector("#jobs tbody"), data.jobs, 7, (job) =>
    el("tr", {},
      el("td", {}, el("a", { href: `/jobs/${job.id}` }, `#${job.id}`)),
      el("td", {}, job.queue),
      el("td", {}, badge(job)),
      el("td", { class: "num" }, `${job.attempt} / ${job.max_attempts}`),
      el("td", {}, when(job.created_at)),
      el("td", {}, when(job.finished_at)),
      el("td", { class: "note" }, job.error ? firstLine(job.error) : job.progress_message || "")));
}

function renderJob(job) {
  const state = document.getElementById("state");
  state.className = `badge big badge-${job.status}`;
  state.textContent = job.status;
  for (const node of document.querySelectorAll("[data-field]")) {
    const value = job[node.dataset.field];
    if (node.dataset.kind === "time") node.textContent = when(value);
    else if (node.dataset.kind === "json") node.textContent = visible(pretty(value));
    else if (node.dataset.field === "progress") node.textContent = `${value || 0}%`;
    else node.textContent = visible(value);
  }
  document.querySelector("#progress progress").value = job.progress || 0;
  document.getElementById("progress").hidden = job.status !== "running";
  document.getElementById("cancel").hidden = !job.actions.includes("cancel");
  document.getElementById("retry").hidden = !job.actions.includes("retry");
  document.getElementById("retried").hidden = job.retried_as === null;
  document.querySelector('#retried a').href = `/jobs/${job.retried_as}`;
  document.querySelector('#retried a').textContent = `#${job.retried_as}`;
  document.getElementById("error").hidden = !job.error;
  document.getElementById("traceback").hidden = !job.traceback;
  document.getElementById("result").hidden = job.result === null;
}

function renderDead(data) {
  fillRows(document.querySelector("#dead tbody"), data.dead, 6, (job) =>
    el("tr", {},
      el("td", {}, el("a", { href: `/jobs/${job.id}` }, `#${job.id}`)),
      el("td", {}, job.queue),
      el("td", { class: "num" }, `${job.attempt} / ${job.max_attempts}`),
      el("td", {}, when(job.dead_at)),
      el("td", { class: "note" }, firstLine(job.error)),
      el("td", { class: "act" }, job.actions.includes("retry")
        ? csrfForm(`/jobs/${job.id}/retry`, "Retry")
        : el("a", { href: `/jobs/${job.retried_as}` }, `replayed as #${job.retried_as}`))));
}

document.addEventListener("DOMContentLoaded", () => {
  const { page, api } = document.body.dataset;
  if (page === "overview") {
    poll([api, "/api/throughput"], (queues, throughput) => {
      renderQueues(queues);
      renderChart(throughput);
    });
  } else if (page === "jobs") {
    poll([api], renderJobs);
  } else if (page === "job") {
    poll([api], renderJob);
  } else if (page === "dead") {
    poll([api], renderDead);
  }
});
