// The pouwd dashboard: polls the node's JSON API and draws the scores over
// height as SVG. No library, nothing fetched from anywhere but this node.
"use strict";

const POLL_MS = 2000;
const HISTORY = 300;
const GENESIS_JOB = "0".repeat(64);
const COLOURS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285", "#c2255c", "#5c940d"];
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const short = (hex) => hex ? hex.slice(0, 8) + "…" + hex.slice(-4) : "–";

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function age(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  return (seconds / 3600).toFixed(1) + " h ago";
}

function showStatus(status, history) {
  $("network").textContent = status.network;
  $("height").textContent = status.height;
  $("tip").textContent = short(status.tip);
  const tipBlock = history.length ? history[history.length - 1] : null;
  $("tip-age").textContent = tipBlock && tipBlock.height > 0 ? age((Date.now() - tipBlock.timestamp_ms) / 1000) : "genesis";
  $("peers").textContent = status.peers;
  const sync = status.sync || {};
  $("sync").textContent = sync.state === "syncing" ? "syncing to " + sync.target_height : "in sync";
  const mining = status.mining || {};
  $("mined").textContent = mining.blocks_mined ?? "–";
  $("steps").textContent = mining.steps_per_second ? Math.round(mining.steps_per_second).toLocaleString("en") + " steps/s" : "not training";
  $("score").textContent = (status.score_ppm / 1e6).toFixed(6);
  const mined = history.filter((b) => b.height > 0);
  if (mined.length >= 2) {
    const span = (mined[mined.length - 1].timestamp_ms - mined[0].timestamp_ms) / 60000;
    $("rate").textContent = span > 0 ? ((mined.length - 1) / span).toFixed(1) + " /min" : "–";
  }
}

function jobLabel(job, names) {
  if (job === GENESIS_JOB) return "genesis task";
  return (names.get(job) || "job") + " " + job.slice(0, 8);
}

function node(name, attrs, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function drawChart(history, names) {
  const svg = $("chart");
  svg.replaceChildren();
  const blocks = history.filter((b) => b.height > 0);
  const W = 900, H = 360, left = 56, right = 16, top = 14, bottom = 34;
  if (!blocks.length) {
    node("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no blocks yet";
    $("chart-note").textContent = "";
    $("legend").replaceChildren();
    return;
  }
  const h0 = blocks[0].height, h1 = blocks[blocks.length - 1].height;
  const scores = blocks.map((b) => b.score_ppm / 1e6);
  let lo = Math.min(...scores), hi = Math.max(...scores);
  const pad = Math.max((hi - lo) * 0.1, 0.005);
  lo = Math.max(0, lo - pad); hi = Math.min(1, hi + pad);
  if (hi <= lo) { hi = Math.min(1, lo + 0.01); lo = hi - 0.01; }
  const x = (h) => left + (h1 === h0 ? (W - left - right) / 2 : (h - h0) / (h1 - h0) * (W - left - right));
  const y = (s) => top + (1 - (s - lo) / (hi - lo)) * (H - top - bottom);

  for (let i = 0; i <= 4; i++) {
    const s = lo + (hi - lo) * i / 4;
    node("line", { class: "grid", x1: left, x2: W - right, y1: y(s), y2: y(s) }, svg);
    node("text", { x: left - 6, y: y(s) + 4, "text-anchor": "end" }, svg).textContent = s.toFixed(3);
  }
  const ticks = Math.min(6, h1 - h0);
  for (let i = 0; i <= ticks; i++) {
    const h = ticks ? Math.round(h0 + (h1 - h0) * i / ticks) : h0;
    node("text", { x: x(h), y: H - bottom + 16, "text-anchor": "middle" }, svg).textContent = h;
  }
  node("line", { class: "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }, svg);
  node("line", { class: "axis", x1: left, x2: left, y1: top, y2: H - bottom }, svg);
  node("text", { x: W - right, y: H - 4, "text-anchor": "end" }, svg).textContent = "height";

  // One series per job, in the order each first appears.
  const series = new Map();
  for (const b of blocks) {
    if (!series.has(b.job)) series.set(b.job, []);
    series.get(b.job).push(b);
  }
  const legend = $("legend");
  legend.replaceChildren();
  let index = 0;
  for (const [job, points] of series) {
    const colour = COLOURS[index++ % COLOURS.length];
    const path = points.map((b, i) => (i ? "L" : "M") + x(b.height).toFixed(1) + "," + y(b.score_ppm / 1e6).toFixed(1)).join(" ");
    node("path", { class: "series", d: path, stroke: colour, "data-job": job }, svg);
    for (const b of points) {
      const circle = node("circle", {
        class: "point", cx: x(b.height).toFixed(1), cy: y(b.score_ppm / 1e6).toFixed(1), r: points.length > 120 ? 2 : 3,
        fill: colour, "data-height": b.height, "data-score": b.score_ppm / 1e6, "data-job": job,
      }, svg);
      node("title", {}, circle).textContent = "height " + b.height + ": " + (b.score_ppm / 1e6).toFixed(6);
    }
    const item = document.createElement("span");
    item.style.setProperty("--swatch", colour);
    item.textContent = jobLabel(job, names) + " (" + points.length + ")";
    legend.appendChild(item);
  }
  $("chart-note").textContent = "heights " + h0 + " to " + h1;
  svg.dataset.points = blocks.length;
}

function showJobs(jobs) {
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  for (const job of jobs) {
    const row = body.insertRow();
    const best = job.best_score == null ? "–" : job.best_score.toFixed(6);
    for (const text of [short(job.id), job.name || "", job.state, job.blocks + " / " + job.max_blocks, best]) {
      row.insertCell().textContent = text;
    }
  }
  $("jobs").style.display = jobs.length ? "" : "none";
  $("no-jobs").style.display = jobs.length ? "none" : "";
}

async function poll() {
  try {
    const [status, model, jobs] = await Promise.all([
      getJson("/status"), getJson("/model?limit=" + HISTORY), getJson("/jobs"),
    ]);
    const names = new Map(jobs.map((j) => [j.id, j.name]));
    const history = model.score_history;
    showStatus(status, history);
    drawChart(history, names);
    showJobs(jobs);
    $("state").textContent = "updated " + new Date().toLocaleTimeString("en-GB");
  } catch (error) {
    $("state").textContent = "cannot reach the node: " + error.message;
  }
  setTimeout(poll, POLL_MS);
}

poll();
