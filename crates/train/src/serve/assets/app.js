// The page of `train serve`: calls the JSON API (/v1/models, /v1/predict, /v1/inspect,
// /v1/translate, /v1/tag) and draws the figures as SVG in the page. No dependencies, works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let models = [];

function status(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

async function api(path, body) {
  const resp = await fetch(path, body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({ error: `HTTP ${resp.status}` }));
  if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
  return data;
}

// Viridis through nine stops, linear between them (the CLI's SVG uses the same map).
const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
function viridis(t) {
  t = Math.min(1, Math.max(0, t));
  const x = t * (VIRIDIS.length - 1), i = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
// Blue–white–red for signed values (cell and hidden state), t in [0, 1] with 0.5 = zero.
function diverging(t) {
  t = Math.min(1, Math.max(0, t));
  const lerp = (a, b, f) => a.map((v, k) => Math.round(v + f * (b[k] - v)));
  const c = t < 0.5 ? lerp([33, 102, 172], [247, 247, 247], t * 2) : lerp([247, 247, 247], [178, 24, 43], (t - 0.5) * 2);
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function el(name, attrs, parent, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function currentModel() {
  return models.find((m) => m.name === $("model").value);
}

function configure() {
  const m = currentModel();
  if (!m) return;
  const translate = m.task === "translate";
  const gates = m.task === "classify";
  const audio = m.task === "transcribe" || m.task === "audio";
  $("model-info").textContent = `${m.task}, ${m.layers} layer(s) × ${m.directions} direction(s) × ${m.hidden} units, ` +
    `${m.parameters.toLocaleString()} parameters` +
    (m.labels.length && m.labels.length <= 20 ? `; labels: ${m.labels.join(", ")}` : "");
  $("gate-controls").querySelectorAll("select, label[for=gate], label[for=layer], label[for=direction]")
    .forEach((e) => { e.hidden = !gates; });
  document.querySelectorAll(".translate-only").forEach((e) => { e.hidden = !translate; });
  $("forecast-controls").hidden = m.task !== "forecast";
  $("audio-note").hidden = !audio;
  $("text").disabled = audio; $("go").disabled = audio;
  $("text-label").textContent = translate ? "Source sentence" : m.task === "forecast" ? "Input window" : "Sentence";
  if (m.task === "forecast") {
    const f = m.forecast;
    const rows = f.example.series.map((r) => (Array.isArray(r) ? r.join(", ") : String(r)));
    $("text").value = rows.join(f.inputs.length > 1 ? "; " : ", ");
    $("start").value = (f.example.dates[0] || "").slice(0, 16);
    $("start").disabled = !f.dates;
    $("forecast-help").textContent = `${f.input_len} rows of ${f.inputs.join(", ")} ` +
      (f.inputs.length > 1 ? "(rows separated by “;”, values by “,”)" : "(separated by commas)") +
      `, every ${f.freq_minutes} min; forecasts ${f.horizon} steps of ${f.targets.join(", ")}` +
      (f.dates ? "" : " (the run uses no dates)");
  } else if (!$("text").value || /^[-0-9.,;\s]+$/.test($("text").value)) {
    $("text").value = "";
  }
  const layer = $("layer");
  layer.innerHTML = "";
  for (let l = 0; l < m.layers; l++) {
    const o = document.createElement("option");
    o.value = l; o.textContent = `layer ${l}`;
    layer.appendChild(o);
  }
  layer.value = m.layers - 1;
  for (const o of $("gate").options) o.disabled = m.gates.length > 0 && !m.gates.includes(o.value);
  if (m.gates.length && !m.gates.includes($("gate").value)) $("gate").value = m.gates[0];
  $("direction").disabled = m.directions < 2;
}

function showProbabilities(label, probs) {
  $("label").textContent = `Label: ${label}`;
  const box = $("probs");
  box.innerHTML = "";
  for (const [name, p] of Object.entries(probs).sort((a, b) => b[1] - a[1])) {
    const row = document.createElement("div");
    row.className = "prob"; row.setAttribute("role", "listitem");
    const n = document.createElement("span"); n.textContent = name;
    const bar = document.createElement("div"); bar.className = "bar"; bar.style.width = `${(100 * p).toFixed(1)}%`;
    const v = document.createElement("span"); v.textContent = p.toFixed(3);
    row.append(n, bar, v);
    box.appendChild(row);
  }
}

// Roving focus over a grid of cells: arrow keys move it, the hover line reads the value.
function gridNavigation(svg, cells, rows, cols) {
  let r = 0, c = 0;
  const show = () => {
    cells.forEach((cell) => cell.classList.remove("focused"));
    const cell = cells[r * cols + c];
    if (!cell) return;
    cell.classList.add("focused");
    cell.setAttribute("stroke", "#e69f00"); cell.setAttribute("stroke-width", "2");
    $("hover").textContent = cell.dataset.describe;
  };
  svg.addEventListener("keydown", (e) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!moves[e.key]) return;
    e.preventDefault();
    cells[r * cols + c]?.removeAttribute("stroke");
    r = Math.min(rows - 1, Math.max(0, r + moves[e.key][0]));
    c = Math.min(cols - 1, Math.max(0, c + moves[e.key][1]));
    show();
  });
  svg.addEventListener("focus", show);
}

function drawHeatmap(ins) {
  const dir = $("direction").value;
  const units = ins.order.filter((u) => dir === "both" || ins.unit_names[u].startsWith(dir));
  const bounded = ["o", "i", "f"].includes(ins.gate);
  const m = Math.max(1e-9, ...ins.values.flat().map(Math.abs));
  const colour = (v) => (bounded ? viridis(v) : diverging(0.5 + v / (2 * m)));
  const cw = Math.max(4, Math.min(18, Math.floor(900 / Math.max(1, units.length))));
  const ch = 18;
  const left = 12 + 7.5 * Math.min(24, Math.max(4, ...ins.tokens.map((t) => t.length)));
  const stripX = left, heatX = left + 30, barsH = 60, top = 10, heatY = top + barsH + 10;
  const width = heatX + units.length * cw + 20;
  const height = heatY + ins.tokens.length * ch + 50;
  const plot = $("plot");
  plot.innerHTML = "";
  const svg = el("svg", {
    id: "heatmap", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", tabindex: "0",
    "aria-label": `${ins.gate} gate of layer ${ins.layer}: ${ins.tokens.length} tokens by ${units.length} units; ` +
      "use the arrow keys to read the cells",
  }, plot);
  // Selectivity bars over the columns (population variance of each unit over the tokens).
  const smax = Math.max(1e-12, ...units.map((u) => ins.selectivity[u]));
  el("text", { x: heatX - 6, y: top + 12, "text-anchor": "end" }, svg, "selectivity");
  units.forEach((u, j) => {
    const h = (barsH * ins.selectivity[u]) / smax;
    const bar = el("rect", { x: heatX + j * cw, y: top + barsH - h, width: Math.max(1, cw - 1), height: h, fill: "#0072B2", class: "sel" }, svg);
    el("title", {}, bar, `${ins.unit_names[u]}: selectivity ${ins.selectivity[u].toFixed(4)}`);
  });
  el("text", { x: stripX + 9, y: heatY - 3, "text-anchor": "middle" }, svg, "mean");
  const cells = [];
  ins.tokens.forEach((tok, t) => {
    const y = heatY + t * ch;
    el("text", { x: stripX - 6, y: y + ch - 5, "text-anchor": "end" }, svg, tok.slice(0, 24));
    const mean = ins.mean[t];
    const s = el("rect", { x: stripX, y, width: 18, height: ch - 1, fill: colour(mean), class: "mean" }, svg);
    el("title", {}, s, `${tok}: mean over units ${mean.toFixed(3)}`);
    s.addEventListener("mouseenter", () => { $("hover").textContent = `${tok}: mean over units ${mean.toFixed(4)}`; });
    units.forEach((u, j) => {
      const v = ins.values[t][u];
      const describe = `token “${tok}”, unit ${ins.unit_names[u]}: ${v.toFixed(4)}`;
      const cell = el("rect", { x: heatX + j * cw, y, width: cw, height: ch - 1, fill: colour(v), class: "cell" }, svg);
      cell.dataset.describe = describe;
      el("title", {}, cell, describe);
      cell.addEventListener("mouseenter", () => { $("hover").textContent = describe; });
      cells.push(cell);
    });
  });
  gridNavigation(svg, cells, ins.tokens.length, units.length);
  const dirText = dir === "both" ? "" : ` (${dir === "fw" ? "forward" : "backward"} direction only)`;
  $("figure-title").textContent = `Heatmap: ${ins.gate} of layer ${ins.layer}`;
  $("figure-help").textContent = `Rows: tokens. Columns: units sorted by selectivity, most selective left${dirText}. ` +
    `Left strip: each token's mean over all units. Colour: ${bounded ? "0 (dark) to 1 (yellow)" : `−${m.toFixed(2)} (blue) to ${m.toFixed(2)} (red)`}.`;
}

function drawAttention(att) {
  const rows = att.target, cols = att.source, w = att.weights;
  const cw = 34, ch = 20;
  const left = 12 + 7.5 * Math.min(24, Math.max(4, ...rows.map((t) => t.length)));
  const topY = 12 + 7 * Math.min(24, Math.max(4, ...cols.map((t) => t.length)));
  const width = left + cols.length * cw + 20, height = topY + rows.length * ch + 20;
  const plot = $("plot");
  plot.innerHTML = "";
  const svg = el("svg", { id: "attention", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", tabindex: "0",
    "aria-label": `attention: ${rows.length} target pieces by ${cols.length} source pieces; use the arrow keys to read the cells` }, plot);
  cols.forEach((c, j) => {
    const x = left + j * cw + cw / 2;
    el("text", { x, y: topY - 6, transform: `rotate(-60 ${x} ${topY - 6})` }, svg, c.slice(0, 24));
  });
  const cells = [];
  rows.forEach((r, i) => {
    el("text", { x: left - 6, y: topY + i * ch + ch - 6, "text-anchor": "end" }, svg, r.slice(0, 24));
    cols.forEach((c, j) => {
      const v = w[i][j];
      const describe = `target “${r}” ← source “${c}”: ${v.toFixed(4)}`;
      const cell = el("rect", { x: left + j * cw, y: topY + i * ch, width: cw - 1, height: ch - 1, fill: viridis(v), class: "cell" }, svg);
      cell.dataset.describe = describe;
      el("title", {}, cell, describe);
      cell.addEventListener("mouseenter", () => { $("hover").textContent = describe; });
      cells.push(cell);
    });
  });
  gridNavigation(svg, cells, rows.length, cols.length);
  $("figure-title").textContent = "Attention";
  $("figure-help").textContent = "Rows: output pieces. Columns: source pieces. Colour: attention weight from 0 (dark) to 1 (yellow).";
}

// `YYYY-MM-DD HH:MM` plus `minutes`, read and written as UTC (the server ignores time zones).
function addMinutes(date, minutes) {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}))?/.exec(date.trim());
  if (!m) throw new Error(`first row's date: ${JSON.stringify(date)} is not YYYY-MM-DD HH:MM`);
  const t = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0)) + minutes * 60000);
  const p = (n) => String(n).padStart(2, "0");
  return `${t.getUTCFullYear()}-${p(t.getUTCMonth() + 1)}-${p(t.getUTCDate())} ${p(t.getUTCHours())}:${p(t.getUTCMinutes())}`;
}

async function forecast(m, text) {
  const f = m.forecast;
  const several = f.inputs.length > 1;
  const rows = text.split(several ? ";" : /[,\s]+/).map((r) => r.trim()).filter((r) => r !== "");
  const series = rows.map((r) => (several ? r.split(",").map(Number) : Number(r)));
  if (series.length !== f.input_len) throw new Error(`input window: ${series.length} rows, the run reads ${f.input_len}`);
  const body = { model: m.name, series: [series] };
  if (f.dates) body.dates = [series.map((_, i) => addMinutes($("start").value, i * f.freq_minutes))];
  const r = await api("/v1/predict", body);
  $("label").textContent = ""; $("probs").innerHTML = ""; $("translation").textContent = "";
  $("result-title").textContent = "Forecast";
  const out = r.forecasts[0];
  // The plot shows the first target column; the line above lists every step of it.
  const k = 0;
  const target = f.targets[k];
  const col = Math.max(0, f.inputs.indexOf(target));
  const history = series.map((row) => (several ? row[col] : row));
  const steps = out.map((s) => (Array.isArray(s) ? s[k] : s));
  $("translation").textContent = `${target}, next ${steps.length} steps: ` + steps.map((v) => v.toFixed(3)).join(", ");
  drawForecast(target, history, steps, f.inputs.includes(target));
}

// The input window (grey) and the forecast (orange, dashed) on one axis, steps from the
// forecast start; every point carries its value as a tooltip and on focus.
function drawForecast(target, history, steps, historyIsTarget) {
  const width = 900, height = 340, left = 70, right = 20, top = 20, bottom = 50;
  const all = (historyIsTarget ? history : []).concat(steps);
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const pad = 0.08 * (hi - lo); lo -= pad; hi += pad;
  const n = history.length, h = steps.length;
  const xOf = (i) => left + ((i + n - 1) / (n + h - 1)) * (width - left - right);
  const yOf = (v) => top + ((hi - v) / (hi - lo)) * (height - top - bottom);
  const plot = $("plot");
  plot.innerHTML = "";
  const svg = el("svg", { id: "forecast", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", tabindex: "0",
    "aria-label": `${target}: ${n} input rows and a forecast of ${h} steps` }, plot);
  for (let g = 0; g <= 4; g++) {
    const v = lo + ((hi - lo) * g) / 4, y = yOf(v);
    el("line", { x1: left, x2: width - right, y1: y, y2: y, stroke: "#e4e4ea" }, svg);
    el("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, svg, v.toFixed(2));
  }
  const mark = (xOf(0) + xOf(1)) / 2;
  el("line", { x1: mark, x2: mark, y1: top, y2: height - bottom, stroke: "#888", "stroke-dasharray": "3 3" }, svg);
  el("text", { x: mark + 4, y: top + 10 }, svg, "forecast start");
  const line = (pts, colour, dashed, cls) => {
    el("polyline", { points: pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "), fill: "none",
      stroke: colour, "stroke-width": 2, "stroke-dasharray": dashed ? "6 4" : "none", class: cls }, svg);
  };
  const points = [];
  if (historyIsTarget) {
    const pts = history.map((v, i) => [xOf(i - n + 1), yOf(v)]);
    line(pts, "#555555", false, "history");
    history.forEach((v, i) => points.push([xOf(i - n + 1), yOf(v), `input row ${i + 1 - n} (${i + 1} of ${n}): ${v.toFixed(4)}`, "#555555", "hist"]));
  }
  const fpts = steps.map((v, s) => [xOf(s + 1), yOf(v)]);
  if (historyIsTarget) fpts.unshift([xOf(0), yOf(history[n - 1])]);
  line(fpts, "#D55E00", true, "forecast");
  steps.forEach((v, s) => points.push([xOf(s + 1), yOf(v), `forecast step ${s + 1}: ${v.toFixed(4)}`, "#D55E00", "step"]));
  const dots = points.map(([x, y, describe, colour, cls]) => {
    const c = el("circle", { cx: x, cy: y, r: 3.5, fill: colour, class: cls }, svg);
    el("title", {}, c, describe);
    c.dataset.describe = describe;
    c.addEventListener("mouseenter", () => { $("hover").textContent = describe; });
    return c;
  });
  gridNavigation(svg, dots, 1, dots.length);
  el("text", { x: (left + width - right) / 2, y: height - 12, "text-anchor": "middle" }, svg, "steps from the forecast start");
  $("figure-title").textContent = `Forecast of ${target}`;
  $("figure-help").textContent = "Grey: the input window. Orange, dashed: the forecast, original scale. " +
    "Focus the plot and use the arrow keys to read the points.";
}

async function tag(m, text) {
  const r = await api("/v1/tag", { model: m.name, texts: [text] });
  const o = r.outputs[0];
  $("label").textContent = ""; $("probs").innerHTML = ""; $("translation").textContent = "";
  $("result-title").textContent = "Tags";
  const box = $("tags");
  box.innerHTML = "";
  o.tokens.forEach((tok, i) => {
    const chip = document.createElement("span");
    chip.className = "tok" + (o.tags[i] && o.tags[i] !== "O" && o.entities.length ? " ent" : "");
    chip.setAttribute("role", "listitem");
    const w = document.createElement("span"); w.textContent = tok;
    const t = document.createElement("span"); t.className = "tag"; t.textContent = o.tags[i];
    chip.append(w, t);
    box.appendChild(chip);
  });
  if (o.entities.length) {
    $("translation").textContent = "Entities: " + o.entities.map((e) => `${e.type} “${e.text}” (tokens ${e.start}–${e.end - 1})`).join("; ");
  }
}

async function submit(e) {
  e.preventDefault();
  const m = currentModel();
  const text = $("text").value;
  if (!m || !text.trim()) { status("Type a sentence first.", true); return; }
  status("Working…");
  $("go").disabled = true;
  try {
    $("tags").innerHTML = "";
    if (m.task === "forecast") {
      await forecast(m, text);
      $("figure").hidden = false;
    } else if (m.task === "tag") {
      await tag(m, text);
      $("plot").innerHTML = ""; $("figure").hidden = true;
    } else if (m.task === "translate") {
      const beam = Number($("beam").value) || 5;
      const r = await api("/v1/translate", { model: m.name, texts: [text], beam, attention: true });
      $("label").textContent = ""; $("probs").innerHTML = "";
      $("translation").textContent = r.outputs[0];
      $("result-title").textContent = "Translation";
      if (r.attention) drawAttention(r.attention);
    } else {
      const gate = $("gate").value, layer = Number($("layer").value);
      const [p, ins] = await Promise.all([
        api("/v1/predict", { model: m.name, texts: [text] }),
        api("/v1/inspect", { model: m.name, text, gate, layer }),
      ]);
      $("translation").textContent = "";
      $("result-title").textContent = "Prediction";
      showProbabilities(p.predictions[0].label, p.predictions[0].probabilities);
      drawHeatmap(ins);
    }
    $("result").hidden = false;
    if (m.task !== "tag") $("figure").hidden = false;
    status("Done.");
  } catch (err) {
    status(`Error: ${err.message}`, true);
  } finally {
    $("go").disabled = false;
  }
}

async function init() {
  try {
    models = (await api("/v1/models")).models;
  } catch (err) {
    status(`Could not list models: ${err.message}`, true);
    return;
  }
  const sel = $("model");
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.name; o.textContent = `${m.name} (${m.task})`;
    sel.appendChild(o);
  }
  sel.addEventListener("change", configure);
  configure();
  $("ask").addEventListener("submit", submit);
  // A changed view re-asks at once when a sentence is there.
  for (const id of ["gate", "layer", "direction"]) {
    $(id).addEventListener("change", () => { if ($("text").value.trim()) $("ask").requestSubmit(); });
  }
  status(`${models.length} model(s) loaded. Type a sentence and press Enter.`);
  document.body.dataset.ready = "1";
}

init();
