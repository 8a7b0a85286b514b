// perfnode's perfusion viewer: study list (QIDO-RS), a perfusion series as one object with its
// Parametric Maps (WADO-RS metadata and frames), the IHE PERF Image Display behaviour, curves, AIF,
// fit, provenance and QC. DICOMweb transport: dicomweb-client; DICOM data: dcmjs; charts: Chart.js.

import { api } from "dicomweb-client";
import {
  Chart, LineController, LineElement, PointElement, LinearScale, Legend, Tooltip, Title,
} from "chart.js";
import {
  buildObjects, framesByInStackPosition, items, naturalize, PARAMETRIC_MAP, provenance, scrollOrder, valueMapping,
} from "./perf.js";
import { draw, drawColourBar, formatValue, LUTS, realValues, robustRange, storedValues } from "./render.js";

Chart.register(LineController, LineElement, PointElement, LinearScale, Legend, Tooltip, Title);

const ROOT = new URL("../dicom-web", window.location.href).href.replace(/\/$/, "");
const client = new api.DICOMwebClient({ url: ROOT });
const NATIVE = [{ mediaType: "application/octet-stream", transferSyntaxUID: "1.2.840.10008.1.2.1" }];
const $ = (id) => document.getElementById(id);

const state = {
  study: null,
  source: null, // {object, values: Map(frameNumber → Float32Array), lo, hi, seriesUID}
  maps: [], // {object, json, values: [Float32Array per source slice], lo, hi, unit, quantity, provenance, seriesUID}
  order: "time-first",
  stack: [],
  stackIndex: 0,
  z: 0,
  t: 0,
  overlay: "",
  voxel: null,
  jobs: [],
};
window.perfnodeViewer = { state, ready: false };

function status(text) {
  $("status").textContent = text;
}

function value(json, tag) {
  const v = json[tag];
  if (!v || !v.Value) return "";
  const x = v.Value[0];
  return typeof x === "object" && x !== null ? x.Alphabetic || "" : String(x);
}

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

// -- study list -------------------------------------------------------------------------------

async function searchStudies(filters = {}) {
  status("searching…");
  const queryParams = Object.fromEntries(Object.entries(filters).filter(([, v]) => v));
  const studies = await client.searchForStudies({ queryParams });
  const body = $("study-list").querySelector("tbody");
  body.innerHTML = "";
  for (const s of studies) {
    const tr = document.createElement("tr");
    const uid = value(s, "0020000D");
    tr.dataset.study = uid;
    tr.innerHTML = [value(s, "00100010"), value(s, "00100020"), value(s, "00080020"), value(s, "00081030"),
      (s["00080061"]?.Value || []).join(", "), value(s, "00201206"), value(s, "00201208")]
      .map((c) => `<td>${esc(c)}</td>`).join("");
    tr.addEventListener("click", () => openStudy(uid));
    body.appendChild(tr);
  }
  status(`${studies.length} stud${studies.length === 1 ? "y" : "ies"}`);
}

// -- one study --------------------------------------------------------------------------------

async function openStudy(studyUID, sourceSeries = null) {
  state.study = studyUID;
  history.replaceState(null, "", `?study=${studyUID}${sourceSeries ? `&series=${sourceSeries}` : ""}`);
  $("studies-view").hidden = true;
  $("study-view").hidden = false;
  status("loading study…");
  const series = await client.searchForSeries({ studyInstanceUID: studyUID });
  const instances = await client.searchForInstances({ studyInstanceUID: studyUID });
  const bySeries = new Map();
  for (const i of instances) {
    const uid = value(i, "0020000E");
    if (!bySeries.has(uid)) bySeries.set(uid, []);
    bySeries.get(uid).push(i);
  }
  const kinds = new Map();
  for (const [uid, list] of bySeries) {
    const isMap = list.every((i) => value(i, "00080016") === PARAMETRIC_MAP);
    const frames = list.reduce((n, i) => n + (Number(value(i, "00280008")) || 1), 0);
    kinds.set(uid, { isMap, frames });
  }
  const first = series[0];
  $("study-title").textContent = `${value(first || {}, "00100010") || "Study"} — ${studyUID}`;
  const body = $("series-list").querySelector("tbody");
  body.innerHTML = "";
  for (const s of series) {
    const uid = value(s, "0020000E");
    const kind = kinds.get(uid) || { isMap: false, frames: 0 };
    const tr = document.createElement("tr");
    tr.dataset.series = uid;
    tr.innerHTML = [value(s, "00200011"), value(s, "00080060"), value(s, "0008103E"), value(s, "00201209"),
      kind.isMap ? "parametric maps" : `${kind.frames} frame(s)`].map((c) => `<td>${esc(c)}</td>`).join("");
    if (!kind.isMap) tr.addEventListener("click", () => openStudy(studyUID, uid));
    body.appendChild(tr);
  }
  const candidates = [...kinds.entries()].filter(([, k]) => !k.isMap).sort((a, b) => b[1].frames - a[1].frames);
  const source = sourceSeries || (candidates[0] && candidates[0][0]);
  const mapSeries = [...kinds.entries()].filter(([, k]) => k.isMap).map(([uid]) => uid);
  if (!source) {
    status("no image series in this study");
    return;
  }
  await loadWorkspace(source, mapSeries);
}

async function loadSeries(seriesUID) {
  const metadata = await client.retrieveSeriesMetadata({ studyInstanceUID: state.study, seriesInstanceUID: seriesUID });
  const datasets = metadata.map((json) => Object.assign(naturalize(json), { _json: json }));
  return buildObjects(datasets);
}

async function loadFrames(object) {
  // one request per instance, all its frames, as native little-endian values (the server decodes)
  const out = new Map();
  for (const ds of object.instances) {
    const n = Number(ds.NumberOfFrames || 1);
    const frames = [];
    for (let start = 1; start <= n; start += 256) { // a few hundred frame numbers per URL
      frames.push(...await client.retrieveInstanceFrames({
        studyInstanceUID: state.study, seriesInstanceUID: ds.SeriesInstanceUID, sopInstanceUID: ds.SOPInstanceUID,
        frameNumbers: Array.from({ length: Math.min(256, n - start + 1) }, (_, i) => start + i), mediaTypes: NATIVE,
      }));
    }
    frames.forEach((f, i) => {
      const buffer = f instanceof ArrayBuffer ? f : f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength);
      out.set(`${ds.SOPInstanceUID}#${i}`, { buffer, ds, index: i });
    });
  }
  return out;
}

async function loadWorkspace(sourceUID, mapSeries) {
  status("loading the perfusion series…");
  const objects = await loadSeries(sourceUID);
  const object = objects[0];
  const raw = await loadFrames(object);
  const values = new Map();
  let all = [];
  for (const f of object.frames) {
    const r = raw.get(`${f.sop}#${f.indexInInstance}`);
    const v = realValues(storedValues(r.buffer, r.ds), valueMapping(r.ds, r.index));
    values.set(f.frameNumber, v);
    if (all.length < 2e6) all = all.concat(Array.from(v.filter((_, i) => i % 7 === 0)));
  }
  // default window: over the object (not the background), 1st–99.5th percentile
  const peak = robustRange(all, 0, 0.999)[1];
  const [lo, hi] = robustRange(all.filter((v) => v > 0.1 * peak), 0.01, 0.995);
  state.source = { object, values, lo, hi, seriesUID: sourceUID };
  state.z = Math.floor(object.nz / 2);
  state.t = 0;
  state.maps = [];
  for (const uid of mapSeries) {
    status("loading maps…");
    for (const mapObject of await loadSeries(uid)) {
      if (!mapObject.isMap) continue;
      state.maps.push(await loadMap(mapObject, uid));
    }
  }
  const jobsUrl = new URL("api/jobs", window.location.href);
  for (const uid of [sourceUID, ...mapSeries]) jobsUrl.searchParams.append("series", uid);
  state.jobs = await (await fetch(jobsUrl)).json();
  $("workspace").hidden = false;
  setupStack();
  renderMaps();
  renderDimensionViewports();
  renderPerfAttributes();
  renderProvenance();
  renderAll();
  status(`${object.instances.length} instance(s), ${object.frames.length} frames, ${state.maps.length} map(s)`);
  window.perfnodeViewer.ready = true;
}

async function loadMap(object, seriesUID) {
  const raw = await loadFrames(object);
  const src = state.source.object;
  const perSlice = [];
  let mapping = null;
  const sample = [];
  // a map frame per source slice: nearest position along the slice normal (any standard Parametric Map)
  for (let z = 0; z < src.nz; z++) {
    const pos = (src.grid.map((row) => row[z]).find((f) => f) || {}).position;
    let best = null;
    for (const f of object.frames) if (!best || Math.abs(f.position - pos) < Math.abs(best.position - pos)) best = f;
    const r = raw.get(`${best.sop}#${best.indexInInstance}`);
    mapping = valueMapping(r.ds, r.index);
    const v = realValues(storedValues(r.buffer, r.ds), mapping);
    perSlice.push(v);
    for (let i = 0; i < v.length; i += 3) sample.push(v[i]);
  }
  let [lo, hi] = robustRange(sample, 0.02, 0.98);
  if (lo > 0 && lo < hi * 0.1) lo = 0;
  const json = object.head._json;
  return {
    object, json, values: perSlice, lo, hi, mapping, seriesUID,
    unit: mapping.unit, unitMeaning: mapping.unitMeaning,
    quantity: mapping.quantity || mapping.label || object.head.SeriesDescription || "map",
    label: mapping.label || mapping.quantity || "map",
    provenance: provenance(json),
    derivation: object.head.DerivationDescription || "",
  };
}

// -- stack viewport (PERF stack mode) ------------------------------------------------------------

function setupStack() {
  const { object } = state.source;
  state.stack = scrollOrder(object, state.order);
  state.stackIndex = 0;
  $("stack-slider").max = state.stack.length - 1;
  $("slice-slider").max = object.nz - 1;
  $("time-slider").max = object.nt - 1;
  const overlay = $("overlay-map");
  overlay.innerHTML = '<option value="">none</option>' + state.maps.map((m, i) => `<option value="${i}">${esc(m.label)}</option>`).join("");
}

function currentFrame() {
  return state.stack[state.stackIndex];
}

function setStackIndex(i) {
  state.stackIndex = Math.max(0, Math.min(state.stack.length - 1, i));
  const f = currentFrame();
  state.z = f.z;
  state.t = f.t;
  renderAll();
}

function setSliceTime(z, t) {
  const { object } = state.source;
  state.z = Math.max(0, Math.min(object.nz - 1, z));
  state.t = Math.max(0, Math.min(object.nt - 1, t));
  const f = object.grid[state.t][state.z];
  if (f) state.stackIndex = state.stack.indexOf(f);
  renderAll();
}

function aifMarkers(z) {
  const out = [];
  for (const m of state.maps) {
    const voxels = m.provenance && (m.provenance.aif_voxels || m.provenance.aif_voxels_zyx);
    if (!voxels) continue;
    for (const v of voxels) if (v.length === 3 && v[0] === z) out.push({ x: v[2], y: v[1], colour: "#ff2d2d" });
    break;
  }
  if (state.voxel) {
    const { x0, y0, x1, y1 } = state.voxel;
    for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) out.push({ x, y, colour: "#2dff6a" });
  }
  return out;
}

function renderAll() {
  const { object, values, lo, hi } = state.source;
  const f = currentFrame();
  const overlayMap = state.overlay !== "" ? state.maps[Number(state.overlay)] : null;
  const overlay = overlayMap ? {
    values: overlayMap.values[f.z], lo: overlayMap.lo, hi: overlayMap.hi, lut: LUTS.turbo,
    opacity: Number($("overlay-opacity").value) / 100,
  } : null;
  const canvas = $("stack-canvas");
  draw(canvas, values.get(f.frameNumber), object.rows, object.cols, lo, hi, LUTS.gray, overlay, aifMarkers(f.z));
  canvas.dataset.frameNumber = f.frameNumber;
  $("stack-slider").value = state.stackIndex;
  $("slice-slider").value = state.z;
  $("time-slider").value = state.t;
  $("stack-position").textContent = `${state.stackIndex + 1} / ${state.stack.length}`;
  $("slice-label").textContent = `${state.z + 1} / ${object.nz}`;
  $("time-label").textContent = `${state.t + 1} / ${object.nt}`;
  renderFrameAttributes(f);
  for (const [i, m] of state.maps.entries()) {
    const c = document.querySelector(`canvas[data-map="${i}"]`);
    if (c) draw(c, m.values[f.z], m.object.rows, m.object.cols, m.lo, m.hi, LUTS.turbo, null, aifMarkers(f.z));
  }
  for (const vp of document.querySelectorAll("#dimension-viewports canvas")) {
    const frames = JSON.parse(vp.dataset.frames);
    const frame = frames[Math.min(state.t, frames.length - 1)];
    draw(vp, values.get(frame), object.rows, object.cols, lo, hi);
    vp.dataset.shown = frame;
  }
}

function renderFrameAttributes(f) {
  const rows = [
    ["Frame Number (in the concatenation)", f.frameNumber],
    ["Instance / frame in instance", `${f.sop.slice(-12)} / ${f.instanceFrameNumber}`],
    ["(0020,9128) Temporal Position Index", f.tpi ?? "—"],
    ["(0020,9056) Stack ID", f.stackId ?? "—"],
    ["(0020,9057) In-Stack Position Number", f.inStackPos ?? "—"],
    ["(0020,9157) Dimension Index Values", f.dimIndexValues.join("\\") || "—"],
    ["(0008,9007) Frame Type value 3", f.frameType[2] ?? "—"],
    ["Slice offset", `${formatValue(f.sliceOffsetMm)} mm`],
  ];
  $("frame-attributes").querySelector("tbody").innerHTML = rows
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td data-attr="${esc(k)}">${esc(v)}</td></tr>`).join("");
}

function renderPerfAttributes() {
  const { object } = state.source;
  const agents = object.contrastAgents;
  const frameTypes = [...new Set(object.frames.map((f) => f.frameType[2]).filter(Boolean))];
  const rows = [
    ["Object", object.concatenationUID
      ? `Concatenation ${object.concatenationUID}: ${object.instances.length} instance(s) loaded as one object`
      : `${object.instances.length} instance(s)`],
    ["Frames", `${object.frames.length} (${object.nz} slice(s) × ${object.nt} time point(s))`],
    ["(0018,0012) Contrast/Bolus Agent Sequence", agents.map((a) => a.agent).join("; ") || "absent"],
    ["(0018,0014) Contrast/Bolus Administration Route Sequence", agents.flatMap((a) => a.routes).join("; ") || "absent"],
    ["(0008,9007) Frame Type value 3 (all frames)", frameTypes.join(", ") || "—"],
    ["Dimensions (0020,9222)", object.dimPointers.map((d) => d.label || d.pointer).join(" · ") || "—"],
  ];
  $("perf-attributes").querySelector("tbody").innerHTML = rows
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("");
  $("object-info").textContent = rows[0][1];
}

// -- viewports by Dimension Index Values ---------------------------------------------------------

function renderDimensionViewports() {
  const box = $("dimension-viewports");
  box.innerHTML = "";
  for (const [pos, frames, how] of framesByInStackPosition(state.source.object)) {
    const fig = document.createElement("figure");
    fig.className = "viewport small";
    const c = document.createElement("canvas");
    c.className = "image";
    c.dataset.dimensionIndexValue = pos;
    c.dataset.inStackPosition = frames[0].inStackPos ?? "";
    c.dataset.frames = JSON.stringify(frames.map((f) => f.frameNumber));
    fig.appendChild(c);
    const cap = document.createElement("figcaption");
    cap.textContent = `${how} = ${pos}: In-Stack Position ${frames[0].inStackPos ?? "—"}, ${frames.length} frames`;
    fig.appendChild(cap);
    box.appendChild(fig);
  }
}

// -- maps --------------------------------------------------------------------------------------

function renderMaps() {
  const box = $("maps");
  box.innerHTML = "";
  for (const [i, m] of state.maps.entries()) {
    const fig = document.createElement("figure");
    fig.className = "map";
    fig.innerHTML = `<figcaption><b>${esc(m.label)}</b> ${esc(m.quantity !== m.label ? m.quantity : "")}
      <span class="unit">[${esc(m.unit || "no unit")}]</span></figcaption>`;
    const row = document.createElement("div");
    row.className = "map-row";
    const c = document.createElement("canvas");
    c.className = "image";
    c.dataset.map = i;
    c.dataset.label = m.label;
    c.addEventListener("click", (ev) => pickVoxel(ev, c, m.object));
    const bar = document.createElement("canvas");
    bar.className = "colour-bar";
    bar.dataset.unit = m.unit;
    drawColourBar(bar, m.lo, m.hi, LUTS.turbo, m.unit);
    row.append(c, bar);
    fig.appendChild(row);
    box.appendChild(fig);
  }
}

// -- curves, AIF, fit --------------------------------------------------------------------------

let roiStart = null;

function canvasVoxel(ev, canvas, rows, cols) {
  const rect = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - rect.left) / rect.width) * cols);
  const y = Math.floor(((ev.clientY - rect.top) / rect.height) * rows);
  return [Math.max(0, Math.min(cols - 1, x)), Math.max(0, Math.min(rows - 1, y))];
}

function pickVoxel(ev, canvas, object) {
  const [x, y] = canvasVoxel(ev, canvas, object.rows, object.cols);
  state.voxel = { x0: x, y0: y, x1: x, y1: y, z: state.z };
  showCurves();
}

function curveAt(roi) {
  const { object, values } = state.source;
  const out = [];
  for (let t = 0; t < object.nt; t++) {
    const f = object.grid[t][roi.z];
    if (!f) {
      out.push(NaN); // no frame at this slice and time point
      continue;
    }
    const v = values.get(f.frameNumber);
    let sum = 0;
    let n = 0;
    for (let y = roi.y0; y <= roi.y1; y++) for (let x = roi.x0; x <= roi.x1; x++) {
      sum += v[y * object.cols + x];
      n += 1;
    }
    out.push(sum / n);
  }
  return out;
}

function times() {
  const { object } = state.source;
  const prov = state.maps.map((m) => m.provenance).find((p) => p && p.times_s);
  if (prov && prov.times_s.length === object.nt) return prov.times_s;
  // the first time source that increases through the time points: frame/acquisition times, Trigger Time
  const firstOf = (row) => row.find((f) => f) || {};
  for (const key of ["acquisitionTime", "triggerTimeS"]) {
    const values = object.grid.map((row) => firstOf(row)[key] ?? NaN);
    if (values.every((v, i) => Number.isFinite(v) && (i === 0 || v > values[i - 1]))) return values.map((v) => v - values[0]);
  }
  return object.grid.map((_, t) => t);
}

function concentration(signal, prov) {
  // DSC: ΔR2* = −ln(S/S0)/TE over the baseline frames the fit used; otherwise S − S0
  const [b0, b1] = prov && prov.baseline_frames ? prov.baseline_frames : [0, 3];
  const base = signal.slice(b0, Math.max(b0 + 1, b1));
  const s0 = base.reduce((a, b) => a + b, 0) / base.length;
  const te = (prov && prov.te_s) || state.source.object.echoTimeS;
  const technique = prov ? String(prov.technique || "").toUpperCase() : "";
  if (technique.startsWith("DSC") && te && s0 > 0) {
    return { values: signal.map((s) => (s > 0 ? -Math.log(s / s0) / te : NaN)), label: "ΔR2* (1/s)" };
  }
  return { values: signal.map((s) => s - s0), label: technique.startsWith("CT") ? "ΔHU" : "S − S0" };
}

let signalChart = null;
let concChart = null;

function chart(canvas, old, title, labels, datasets, yLabel, aifLabel = `AIF ${yLabel}`) {
  if (old) old.destroy();
  return new Chart(canvas, {
    type: "line",
    data: { labels, datasets },
    options: {
      animation: false, responsive: false, parsing: false,
      plugins: { title: { display: true, text: title }, legend: { display: true } },
      scales: {
        x: { type: "linear", title: { display: true, text: "time (s)" } },
        y: { title: { display: true, text: yLabel } },
        ...(datasets.some((d) => d.yAxisID === "aif")
          ? { aif: { position: "right", title: { display: true, text: aifLabel }, grid: { drawOnChartArea: false } } }
          : {}),
      },
    },
  });
}

async function showCurves() {
  const roi = state.voxel;
  const t = times();
  const signal = curveAt(roi);
  const prov = state.maps.map((m) => m.provenance).find((p) => p && p.aif_curve) || null;
  const where = roi.x0 === roi.x1 && roi.y0 === roi.y1 ? `voxel (x ${roi.x0}, y ${roi.y0}, slice ${roi.z + 1})`
    : `ROI x ${roi.x0}–${roi.x1}, y ${roi.y0}–${roi.y1}, slice ${roi.z + 1}`;
  $("curve-voxel").textContent = where;
  const pts = (ys) => ys.map((y, i) => ({ x: t[i], y }));
  signalChart = chart($("curve-chart"), signalChart, `Time–intensity curve, ${where}`, t,
    [{ label: "signal", data: pts(signal), borderColor: "#1f77b4", pointRadius: 2 }], "signal");
  const conc = concentration(signal, prov);
  const datasets = [{ label: `tissue ${conc.label}`, data: pts(conc.values), borderColor: "#2ca02c", pointRadius: 2 }];
  let fitText = "";
  if (prov && prov.aif_curve && prov.aif_curve.length === t.length) {
    datasets.push({ label: "AIF (used by the fit, right axis)", data: pts(prov.aif_curve), borderColor: "#d62728",
      pointRadius: 1, yAxisID: "aif" });
    const voxels = prov.aif_voxels || prov.aif_voxels_zyx || [];
    fitText += `<p>AIF: ${esc(prov.aif_source ? `${prov.aif_source} selection` : prov.aif || "")}, ${voxels.length} voxel(s) at (z, y, x) ${
      esc(voxels.map((v) => `(${v.join(", ")})`).join(" "))} (red squares on the images).</p>`;
    const PK = ["tofts", "extended_tofts", "patlak"];
    const mapValue = (key) => {
      const m = state.maps.find((mm) => mm.provenance && mm.provenance.map && mm.provenance.map.key === key);
      return m ? m.values[roi.z][roi.y0 * m.object.cols + roi.x0] : null;
    };
    const pkModel = PK.includes(prov.model) ? prov.model : null;
    const request = pkModel
      ? { model: pkModel, times_s: t, aif: prov.aif_curve, ktrans_per_min: mapValue("ktrans"),
        kep_per_min: mapValue("kep") ?? (mapValue("ktrans") / mapValue("ve")), vp: mapValue("vp") ?? 0,
        ps_per_min: mapValue("ps") }
      : { times_s: t, tissue: conc.values, aif: prov.aif_curve, method: prov.method || "osvd",
        kh_over_rho: prov.kh_over_rho || 1.0 };
    try {
      const res = await fetch(new URL("api/fit", window.location.href), {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
      });
      if (res.ok && pkModel) {
        const fit = await res.json();
        datasets.push({ label: `model curve (${pkModel}, the voxel's fitted parameters; right axis)`, data: pts(fit.fitted),
          borderColor: "#9467bd", borderDash: [6, 3], pointRadius: 0, yAxisID: "aif" });
        fitText += `<p id="fit-result" data-model="${esc(pkModel)}">Fit: ${esc(pkModel)}, Ktrans ${formatValue(request.ktrans_per_min)} /min, `
          + `kep ${formatValue(request.kep_per_min)} /min, vp ${formatValue(request.vp)}</p>`;
      } else if (res.ok) {
        const fit = await res.json();
        datasets.push({ label: `fit (${fit.method}, R² ${formatValue(fit.r2)})`, data: pts(fit.fitted), borderColor: "#9467bd",
          borderDash: [6, 3], pointRadius: 0 });
        fitText += `<p id="fit-result" data-cbf="${fit.cbf}" data-mtt="${fit.mtt_s}">Fit: ${esc(fit.method)} deconvolution, CBF ${formatValue(fit.cbf)} ${esc(fit.cbf_unit)}, `
          + `MTT ${formatValue(fit.mtt_s)} s, Tmax ${formatValue(fit.tmax_s)} s, R² ${formatValue(fit.r2)}</p>`;
      } else {
        fitText += `<p>Fit: ${esc(await res.text())}</p>`;
      }
    } catch (err) {
      fitText += `<p>Fit unavailable: ${esc(err)}</p>`;
    }
  }
  for (const m of state.maps) {
    const v = m.values[roi.z][roi.y0 * m.object.cols + roi.x0];
    fitText += `<span class="map-value" data-map="${esc(m.label)}" data-value="${v}">${esc(m.label)} ${formatValue(v)} ${esc(m.unit)}</span> `;
  }
  const aifLabel = prov && prov.aif_units ? `AIF ${prov.aif_units}` : prov && prov.model ? "AIF, model (mM plasma / tissue)" : undefined;
  concChart = chart($("conc-chart"), concChart, "Concentration, AIF and fit", t, datasets, conc.label, aifLabel);
  $("fit-info").innerHTML = fitText;
  renderAll();
}

// -- provenance and QC -------------------------------------------------------------------------

function renderProvenance() {
  const box = $("provenance");
  const parts = [];
  for (const job of state.jobs) {
    parts.push(`<p class="job">Job ${job.id}: ${esc(job.analysis)} ${esc(job.state)}${job.error ? ` — ${esc(job.error)}` : ""}
      ${job.report ? ` · <a id="report-link" href="${esc(job.report)}" target="_blank">HTML report</a>` : ""}
      ${job.qc ? ` · <a href="${esc(job.qc)}" target="_blank">qc.json</a>` : ""}</p>`);
  }
  for (const m of state.maps) {
    const p = m.provenance;
    let findings = [];
    if (p && p.qc_findings) {
      findings = typeof p.qc_findings === "string" ? [] : p.qc_findings;
    }
    const errors = findings.filter((f) => f.severity === "error").length;
    const warnings = findings.filter((f) => f.severity === "warning").length;
    const verdict = p ? (errors ? `QC: ${errors} error(s), ${warnings} warning(s)` : `QC: passed (${warnings} warning(s))`)
      : "QC: not recorded in this map";
    parts.push(`<details class="map-provenance" data-map="${esc(m.label)}"><summary><b>${esc(m.label)}</b> — ${esc(verdict)}</summary>
      <p>${esc(m.derivation || "no Derivation Description")}</p>
      ${findings.length ? `<ul>${findings.map((f) => `<li class="${esc(f.severity)}">${esc(f.severity)}: ${esc(f.tag || "")} ${esc(f.keyword || "")} found ${esc(f.found)}, expected ${esc(f.expected)} — ${esc(f.rule)}</li>`).join("")}</ul>` : ""}
      ${p ? `<pre>${esc(JSON.stringify(p, null, 1)).slice(0, 20000)}</pre>` : ""}</details>`);
  }
  box.innerHTML = parts.join("") || "<p>No maps or jobs for this series.</p>";
}

// -- events ------------------------------------------------------------------------------------

function wire() {
  $("study-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    searchStudies(Object.fromEntries(new FormData(ev.target)));
  });
  $("scroll-order").addEventListener("change", (ev) => {
    state.order = ev.target.value;
    const f = currentFrame();
    state.stack = scrollOrder(state.source.object, state.order);
    state.stackIndex = state.stack.indexOf(f);
    renderAll();
  });
  $("stack-slider").addEventListener("input", (ev) => setStackIndex(Number(ev.target.value)));
  $("stack-prev").addEventListener("click", () => setStackIndex(state.stackIndex - 1));
  $("stack-next").addEventListener("click", () => setStackIndex(state.stackIndex + 1));
  $("slice-slider").addEventListener("input", (ev) => setSliceTime(Number(ev.target.value), state.t));
  $("time-slider").addEventListener("input", (ev) => setSliceTime(state.z, Number(ev.target.value)));
  $("overlay-map").addEventListener("change", (ev) => {
    state.overlay = ev.target.value;
    renderAll();
  });
  $("overlay-opacity").addEventListener("input", () => renderAll());
  const canvas = $("stack-canvas");
  canvas.addEventListener("mousedown", (ev) => {
    if (ev.shiftKey) roiStart = canvasVoxel(ev, canvas, state.source.object.rows, state.source.object.cols);
  });
  canvas.addEventListener("mouseup", (ev) => {
    const { rows, cols } = state.source.object;
    const [x, y] = canvasVoxel(ev, canvas, rows, cols);
    const [sx, sy] = roiStart || [x, y];
    roiStart = null;
    state.voxel = { x0: Math.min(sx, x), y0: Math.min(sy, y), x1: Math.max(sx, x), y1: Math.max(sy, y), z: state.z };
    showCurves();
  });
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    setStackIndex(state.stackIndex + Math.sign(ev.deltaY));
  });
  document.addEventListener("keydown", (ev) => {
    if (!state.source) return;
    if (ev.key === "ArrowUp" || ev.key === "ArrowDown") setSliceTime(state.z + (ev.key === "ArrowUp" ? 1 : -1), state.t);
    if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") setSliceTime(state.z, state.t + (ev.key === "ArrowRight" ? 1 : -1));
  });
}

window.perfnodeViewer.stackOrder = () => state.stack.map((f) => ({
  frameNumber: f.frameNumber, tpi: f.tpi, stackId: f.stackId, inStackPos: f.inStackPos, sop: f.sop,
  instanceFrameNumber: f.instanceFrameNumber,
}));
window.perfnodeViewer.items = items;

async function main() {
  wire();
  const params = new URLSearchParams(window.location.search);
  try {
    if (params.get("study")) await openStudy(params.get("study"), params.get("series"));
    else await searchStudies();
  } catch (err) {
    status(`error: ${err.message || err}`);
    window.perfnodeViewer.error = String(err && err.stack ? err.stack : err);
    throw err;
  }
}

main();
