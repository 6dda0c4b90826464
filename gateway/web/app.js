// The web page's script: the public API only (/v1/jobs, /openapi.json), the key in memory only.
// No framework and no build step; every value from the service is written with textContent or as an SVG
// attribute, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = { audio: "#1f77b4", text: "#ff7f0e", face: "#2ca02c", landmarks: "#d62728", body: "#9467bd" };
const state = { key: "", job: null, timer: null, document: null, cursor: null };

function $(id) { return document.getElementById(id); }

function say(id, text, kind) {
  const node = $(id);
  node.textContent = text;
  node.className = kind || "";
}

async function api(path, options) {
  if (!state.key) throw new Error("paste your API key first");
  const init = Object.assign({}, options || {});
  init.headers = Object.assign({ Authorization: "Bearer " + state.key }, init.headers || {});
  const response = await fetch(path, init);
  if (!response.ok) {
    let reason = response.status + " " + response.statusText;
    try { reason = response.status + ": " + (await response.json()).error; } catch (e) { /* not JSON */ }
    const error = new Error(reason);
    error.status = response.status;
    throw error;
  }
  return response;
}

function idempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// --- the form -------------------------------------------------------------------------------------------
function buildForm() {
  const modalities = JSON.parse(document.body.dataset.modalities || "[]");
  const box = $("modalities");
  for (const name of modalities) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.checked = true;
    input.value = name;
    input.id = "modality-" + name;
    label.append(input, " " + name + " ");
    box.append(label);
  }
  const select = $("fusion");
  for (const name of JSON.parse(document.body.dataset.fusions || "[]")) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
}

function subjectFromName(name) {
  const match = /^Subject_(\d+)_Story_\d+\./.exec(name);
  return match ? match[1] : "";
}

async function upload(event) {
  event.preventDefault();
  const file = $("video").files[0];
  if (!file) { say("upload-status", "choose a video first", "error"); return; }
  const form = new FormData();
  form.append("video", file, file.name);
  const subject = $("subject").value.trim() || subjectFromName(file.name);
  if (subject) form.append("subject", subject);
  if ($("listener").value.trim()) form.append("listener", $("listener").value.trim());
  if ($("fusion").value) form.append("fusion", $("fusion").value);
  if ($("callback-url").value.trim()) form.append("callback_url", $("callback-url").value.trim());
  const boxes = Array.from(document.querySelectorAll("#modalities input"));
  const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
  if (chosen.length === 0) { say("upload-status", "choose at least one modality", "error"); return; }
  if (chosen.length < boxes.length) form.append("modalities", chosen.join(","));
  say("upload-status", "uploading " + file.name + " ...");
  $("submit").disabled = true;
  try {
    const response = await api("/v1/jobs", { method: "POST", body: form,
                                             headers: { "Idempotency-Key": idempotencyKey() } });
    const job = await response.json();
    say("upload-status", "accepted: job " + job.id, "ok");
    showJob(job.id);
    loadJobs();
  } catch (error) {
    say("upload-status", "refused: " + error.message, "error");
  } finally {
    $("submit").disabled = false;
  }
}

// --- one job: progress, then the curves ---------------------------------------------------------------
function showJob(id) {
  clearTimeout(state.timer);
  state.job = id;
  state.document = null;
  $("job-section").hidden = false;
  $("job-id").textContent = id;
  $("downloads").hidden = true;
  for (const node of ["progress", "plot", "legend", "notes"]) $(node).replaceChildren();
  poll();
}

function renderProgress(job) {
  const box = $("progress");
  box.replaceChildren();
  for (const [name, entry] of Object.entries(job.modalities)) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.modality = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = entry.progress;
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = entry.status + (entry.detail ? " - " + entry.detail : "");
    row.append(label, bar, status);
    box.append(row);
  }
}

async function poll() {
  const id = state.job;
  try {
    const job = await (await api("/v1/jobs/" + id)).json();
    if (id !== state.job) return;
    renderProgress(job);
    const pct = Math.round(100 * job.progress);
    if (job.state === "done") {
      say("job-state", "done" + (job.degraded ? " (degraded: fused " + job.used.join(", ") + ")" : ""), "ok");
      const result = await (await api("/v1/jobs/" + id + "/result")).json();
      if (id !== state.job) return;
      state.document = result;
      draw(result);
      $("downloads").hidden = false;
      return;
    }
    if (job.state === "failed") { say("job-state", "failed: " + (job.error || "unknown error"), "error"); return; }
    say("job-state", job.state + " " + pct + " %");
  } catch (error) {
    say("job-state", "cannot read the job: " + error.message, "error");
    if (error.status === 404 || error.status === 401) return;
  }
  state.timer = setTimeout(poll, 1000);
}

function node(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

// A polyline path over frames; null values break the line (where a module saw nothing, nothing is drawn).
function pathData(values, x, y) {
  let d = "";
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || v === undefined || !Number.isFinite(v)) { pen = false; return; }
    d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
    pen = true;
  });
  return d;
}

function draw(result) {
  const width = 900, top = 20, height = 260, gap = 40, agreementHeight = 80, left = 40;
  const n = result.valence.length;
  const [low, high] = result.label_range || [-1, 1];
  const x = (i) => left + (width - left - 10) * (n > 1 ? i / (n - 1) : 0);
  const y = (v) => top + height * (1 - (v - low) / (high - low));
  const ya = (v) => top + height + gap + agreementHeight * (1 - v);
  const svg = node("svg", { viewBox: `0 0 ${width} ${top + height + gap + agreementHeight + 25}`, id: "valence-plot" });
  svg.append(node("line", { x1: left, x2: width - 10, y1: y(0), y2: y(0), stroke: "#ccc" }));
  for (const v of [low, 0, high]) {
    const t = node("text", { x: 2, y: y(v) + 4, "font-size": 11, fill: "#555" });
    t.textContent = v.toFixed(1);
    svg.append(t);
  }
  const legend = $("legend");
  legend.replaceChildren();
  const band = result.band || {};
  if (band.low && band.high) {
    const upper = pathData(band.high, x, y);
    const lower = band.low.map((v, i) => [i, v]).filter(([, v]) => v !== null).reverse()
      .map(([i, v]) => "L" + x(i).toFixed(1) + " " + y(v).toFixed(1)).join("");
    if (upper) {
      svg.append(node("path", { id: "band", d: upper + lower + "Z", fill: "#9ecae1", "fill-opacity": 0.5, stroke: "none" }));
      addLegend("band", "band" + (band.coverage ? " (" + Math.round(100 * band.coverage) + " % on validation)" : ""));
    }
  }
  for (const [name, entry] of Object.entries(result.modalities)) {
    const d = pathData(entry.valence, x, y);
    if (!d) {  // no signal: said, not drawn
      addLegend(name + " nosignal", name + ": no curve (" + entry.status + (entry.detail ? ": " + entry.detail : "") + ")");
      continue;
    }
    svg.append(node("path", { class: "module", "data-modality": name, d, fill: "none",
                              stroke: COLOURS[name] || "#888", "stroke-width": 1, "stroke-opacity": 0.8 }));
    const weight = result.fusion && result.fusion.weights ? result.fusion.weights[name] : undefined;
    addLegend(name, name + (weight !== undefined ? " (weight " + weight.toFixed(2) + ")" : " (not fused)"));
  }
  const fused = pathData(result.valence, x, y);
  svg.append(node("path", { id: "curve-fused", d: fused, fill: "none", stroke: "#000", "stroke-width": 2.5 }));
  addLegend("fused", "fused (" + (result.fusion ? result.fusion.method : "") + ")");
  svg.append(node("line", { x1: left, x2: width - 10, y1: ya(0), y2: ya(0), stroke: "#ccc" }));
  svg.append(node("path", { id: "curve-agreement", d: pathData(result.agreement, x, ya), fill: "none",
                            stroke: "#7f7f7f", "stroke-width": 1.5 }));
  addLegend("agreement", "agreement (0..1, lower panel)");
  const axis = node("text", { x: left, y: top + height + gap + agreementHeight + 20, "font-size": 11, fill: "#555" });
  axis.textContent = "0 s";
  const end = node("text", { x: width - 60, y: top + height + gap + agreementHeight + 20, "font-size": 11, fill: "#555" });
  end.textContent = (n / (result.fps || 25)).toFixed(1) + " s";
  svg.append(axis, end);
  $("plot").replaceChildren(svg);
  const notes = $("notes");
  notes.replaceChildren();
  for (const text of result.notes || []) {
    const li = document.createElement("li");
    li.textContent = text;
    notes.append(li);
  }
}

function addLegend(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  $("legend").append(li);
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function stem() {
  const video = (state.document && state.document.video) || "video";
  return video.replace(/\.[^.]*$/, "") || "video";
}

async function downloadCsv() {
  try {
    const response = await api("/v1/jobs/" + state.job + "/result?format=csv");
    saveBlob(await response.blob(), stem() + "_valence.csv");
  } catch (error) { say("job-state", "download failed: " + error.message, "error"); }
}

function downloadJson() {
  saveBlob(new Blob([JSON.stringify(state.document)], { type: "application/json" }), stem() + "_valence.json");
}

// --- the list of one's jobs ---------------------------------------------------------------------------
async function loadJobs(more) {
  const params = new URLSearchParams({ limit: "20" });
  if ($("state-filter").value) params.set("state", $("state-filter").value);
  if (more && state.cursor) params.set("cursor", state.cursor);
  try {
    const page = await (await api("/v1/jobs?" + params.toString())).json();
    const body = $("job-table").querySelector("tbody");
    if (!more) body.replaceChildren();
    for (const job of page.jobs) body.append(jobRow(job));
    state.cursor = page.next_cursor;
    $("more").hidden = !page.next_cursor;
    say("jobs-status", body.children.length ? "" : "no jobs yet");
  } catch (error) {
    say("jobs-status", "cannot list jobs: " + error.message, "error");
  }
}

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.job = job.id;
  const cells = [new Date(job.created * 1000).toLocaleString(), job.filename, job.state,
                 Math.round(100 * job.progress) + " %"];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    row.append(td);
  }
  const actions = document.createElement("td");
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  open.textContent = "Open";
  open.addEventListener("click", () => showJob(job.id));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete";
  remove.textContent = "Delete";
  remove.addEventListener("click", () => deleteJob(job.id));
  actions.append(open, " ", remove);
  row.append(actions);
  return row;
}

async function deleteJob(id) {
  let message = ["deleted job " + id, "ok"];
  try {
    await api("/v1/jobs/" + id, { method: "DELETE" });
    if (state.job === id) {
      clearTimeout(state.timer);
      state.job = null;
      $("job-section").hidden = true;
    }
  } catch (error) {
    message = ["delete failed: " + error.message, "error"];
  }
  await loadJobs();
  say("jobs-status", message[0], message[1]);
}

function useKey() {
  state.key = $("api-key").value.trim();
  say("key-status", state.key ? "key set (kept in this page only)" : "no key", state.key ? "ok" : "error");
  if (state.key) loadJobs();
}

document.addEventListener("DOMContentLoaded", () => {
  buildForm();
  $("key-use").addEventListener("click", useKey);
  $("api-key").addEventListener("keydown", (event) => { if (event.key === "Enter") useKey(); });
  $("upload-form").addEventListener("submit", upload);
  $("refresh").addEventListener("click", () => loadJobs());
  $("more").addEventListener("click", () => loadJobs(true));
  $("state-filter").addEventListener("change", () => loadJobs());
  $("download-csv").addEventListener("click", downloadCsv);
  $("download-json").addEventListener("click", downloadJson);
});
