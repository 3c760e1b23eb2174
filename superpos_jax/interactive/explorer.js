// The explorer page's script: reads the cube the page carries (see page.py), draws the
// view state of views.py with plotly.js, and opens a point's models on click. Every
// number comes from the page's arrays; nothing here is fitted or recomputed.
"use strict";
(async function main() {
  performance.mark("explorer:start");  // the stages of a load, for benchmarks/explorer_pages.py
  const META = JSON.parse(document.getElementById("explorer-meta").textContent);
  const LOOK = META.look;
  const status = document.getElementById("status");
  if (typeof Plotly === "undefined") {
    status.textContent = "plotly.min.js was not found beside this page: copy it from the folder the page was written to.";
    return;
  }

  // ---- the data block: base64 -> deflate -> typed arrays
  const b64 = document.getElementById("explorer-data").textContent.trim();
  let bytes;
  if (Uint8Array.fromBase64) bytes = Uint8Array.fromBase64(b64);
  else {
    const s = atob(b64);
    bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  }
  const inflated = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  const BUFFER = await new Response(inflated).arrayBuffer();
  performance.mark("explorer:inflated");
  const TYPES = { float32: Float32Array, uint8: Uint8Array, uint16: Uint16Array, int32: Int32Array };
  const DECODED = {};
  const arr = (ref) => {  // page.py's byte planes back to a typed array (and log16 deltas summed)
    if (DECODED[ref]) return DECODED[ref];
    const e = META.arrays[ref], T = TYPES[e.dtype], k = T.BYTES_PER_ELEMENT;
    const planes = new Uint8Array(BUFFER, e.offset, e.count * k), bytes = new Uint8Array(e.count * k);
    for (let j = 0; j < k; j++) for (let i = 0, o = j * e.count; i < e.count; i++) bytes[i * k + j] = planes[o + i];
    const a = new T(bytes.buffer);
    if (e.encoding === "log16") {
      const T_ = e.shape[e.shape.length - 1];
      for (let i = 0; i < a.length; i++) if (i % T_) a[i] = (a[i] + a[i - 1]) & 0xffff;
    }
    return (DECODED[ref] = a);
  };
  const METRICS = {};
  for (const [name, m] of Object.entries(META.metrics))
    METRICS[name] = { ...m, values: arr(m.values), typical: m.typical ? arr(m.typical) : null };
  const BEST = arr(META.best);
  performance.mark("explorer:decoded");

  // ---- grid positions: a model is an index over every axis, a point over non-seed axes
  const AXES = META.axes;
  const strides = (shape) => shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const STRIDE = strides(AXES.map((a) => a.values.length));
  const SEEDS = AXES.filter((a) => META.seed_axes.includes(a.name));
  const SEED_STRIDE = strides(SEEDS.map((a) => a.values.length));
  const NSEEDS = SEEDS.reduce((n, a) => n * a.values.length, 1);
  const POINT_AXES = AXES.filter((a) => !META.seed_axes.includes(a.name));
  const POINT_STRIDE = strides(POINT_AXES.map((a) => a.values.length));
  const axis = (name) => AXES.find((a) => a.name === name);
  const pointIndex = (p) => POINT_AXES.reduce((s, a, j) => s + POINT_STRIDE[j] * p[a.name], 0);
  const pointOf = (flat) => Object.fromEntries(POINT_AXES.map((a, j) =>
    [a.name, Math.floor(flat / POINT_STRIDE[j]) % a.values.length]));
  const seedOf = (k) => Object.fromEntries(SEEDS.map((a, j) =>
    [a.name, Math.floor(k / SEED_STRIDE[j]) % a.values.length]));
  const modelIndex = (p, k) => {
    const s = seedOf(k);
    return AXES.reduce((i, a, j) => i + STRIDE[j] * (a.name in s ? s[a.name] : p[a.name]), 0);
  };
  const seedOfMode = (p, mode) => (mode === "best" ? BEST[pointIndex(p)] : +mode);
  function value(name, p, mode) {
    const m = METRICS[name];
    if (mode === "typical") return m.typical ? m.typical[pointIndex(p)] : NaN;
    return m.values[modelIndex(p, seedOfMode(p, mode))];
  }
  function modelArray(name, mi) {
    const spec = META.model[name], e = META.arrays[spec.ref];
    const size = spec.dims.reduce((a, b) => a * b, 1);
    const raw = arr(spec.ref).subarray(mi * size, (mi + 1) * size);
    if (e.encoding !== "log16") return raw;
    const step = (e.hi - e.lo) / 65534;
    return Float32Array.from(raw, (q) => (q === 65535 ? NaN : Math.pow(10, e.lo + q * step)));
  }

  // ---- formatting (d3 formats in hover templates; tables print 4 significant digits)
  const seedLabel = (k) => SEEDS.map((a, j) => `${a.label} ${a.values[seedOf(k)[a.name]]}`).join(", ");
  const fmt = (v, digits = 4) => (Number.isFinite(v) ? String(+v.toPrecision(digits)) : "n/a");
  const coord = (a, i) => (typeof a.values[i] === "string" ? a.values[i] : fmt(a.values[i], 3));
  const shown = (name, v) => {
    const m = METRICS[name];
    return m.categories && Number.isFinite(v) ? m.categories[v] : v;
  };
  const hoverLine = (name, k) => `${METRICS[name].label}: %{customdata[${k}]${METRICS[name].categories ? "" : ":.4~g"}}`;
  const plain = (html) => html.replace(/<sup>2<\/sup>/g, "²").replace(/<sub>i<\/sub>/g, "ᵢ").replace(/<[^>]+>/g, "");
  const modeText = (mode) => (NSEEDS === 1 ? "1 seed" : mode === "best" ? `best of ${NSEEDS} seeds (lowest eval loss)`
    : mode === "typical" ? LOOK.typical : seedLabel(+mode));

  // ---- the view state (views.py) and its controls
  const PRESETS = META.presets;
  let STATE = structuredClone(Object.values(PRESETS)[0]);
  let PRESET = Object.keys(PRESETS)[0];
  const controls = document.getElementById("controls");
  function select(label, options, current, onchange) {
    const el = document.createElement("label");
    el.textContent = plain(label) + " ";
    const s = document.createElement("select");
    s.dataset.control = plain(label);
    for (const [v, text] of options) s.add(new Option(plain(String(text)), v, false, String(v) === String(current)));
    s.onchange = () => onchange(s.value);
    el.appendChild(s);
    return el;
  }
  function setAxes(change) {
    Object.assign(STATE, change);
    const used = new Set([STATE.x, STATE.kind === "heatmap" ? STATE.y : null, STATE.facet]);
    const fixed = {};
    for (const a of POINT_AXES) if (!used.has(a.name)) fixed[a.name] = STATE.fixed[a.name] ?? 0;
    STATE.fixed = fixed;
  }
  function drawControls() {
    controls.replaceChildren();
    const varied = POINT_AXES.filter((a) => a.values.length > 1);
    const axisOptions = varied.map((a) => [a.name, a.label]);
    controls.append(select("view", Object.keys(PRESETS).map((k) => [k, k]), PRESET, (v) => {
      PRESET = v; STATE = structuredClone(PRESETS[v]); draw();
      if (STATE.open_panel) openPanel({ ...pointOf(0), ...STATE.open_panel });
    }));
    controls.append(select("chart", [["heatmap", "heatmap"], ["curves", "curves"]], STATE.kind, (v) => {
      if (v === "heatmap" && !STATE.y) STATE.y = varied.map((a) => a.name).find((n) => n !== STATE.x && n !== STATE.facet);
      if (v === "heatmap" && !STATE.y) return drawControls();
      setAxes({ kind: v, x_inverse: false, x_title: null }); draw();
    }));
    controls.append(select("x", axisOptions, STATE.x, (v) => {
      setAxes({ x: v, y: STATE.y === v ? STATE.x : STATE.y, facet: STATE.facet === v ? null : STATE.facet, x_inverse: false, x_title: null });
      draw();
    }));
    if (STATE.kind === "heatmap") controls.append(select("y", axisOptions, STATE.y, (v) => {
      setAxes({ y: v, x: STATE.x === v ? STATE.y : STATE.x, facet: STATE.facet === v ? null : STATE.facet }); draw();
    }));
    controls.append(select(STATE.kind === "heatmap" ? "panels" : "lines", [["", "none"], ...axisOptions], STATE.facet ?? "", (v) => {
      setAxes({ facet: v || null }); draw();
    }));
    controls.append(select("metric", Object.entries(METRICS).map(([k, m]) => [k, m.label]), STATE.metric, (v) => {
      STATE.metric = v; STATE.hover = [v, ...STATE.hover.filter((h) => h !== v)]; draw();
    }));
    const modes = [["best", "best seed"]];
    if (NSEEDS > 1) modes.push(["typical", "typical seed"]);
    if (NSEEDS > 1) for (let k = 0; k < NSEEDS; k++) modes.push([String(k), seedLabel(k)]);
    controls.append(select("seeds", modes, STATE.seeds, (v) => { STATE.seeds = v; draw(); }));
    for (const [name, i] of Object.entries(STATE.fixed)) {
      const a = axis(name);
      if (a.values.length > 1) controls.append(select(a.label, a.values.map((_, j) => [j, coord(a, j)]), i, (v) => {
        STATE.fixed[name] = +v; draw();
      }));
    }
  }

  // ---- the main view
  const colorbarTicks = (m, lo, hi) => {
    if (m.categories) return { tickvals: m.categories.map((_, i) => i), ticktext: m.categories };
    if (!m.log) return {};
    const vals = [];
    for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) vals.push(e);
    return { tickvals: vals, ticktext: vals.map((e) => `1e${e}`) };
  };
  function colour(m) {
    if (!m.categories) return { colorscale: LOOK.viridis };
    const K = m.categories.length, scale = [];
    m.colors.forEach((c, i) => { scale.push([i / K, c], [(i + 1) / K, c]); });
    return { colorscale: scale, zmin: -0.5, zmax: K - 0.5 };
  }
  const zOf = (m, v) => (m.log ? (v > 0 ? Math.log10(v) : NaN) : v);
  const cells = (a) => (a.log && LOOK.edges[a.name] ? LOOK.edges[a.name] : a.values);
  const axisType = (a) => (typeof a.values[0] === "string" ? "category" : a.log ? "log" : "linear");
  const decades = (a) => Math.log10(Math.max(...a.values) / Math.min(...a.values));
  const axisLayout = (a, title) => ({ type: axisType(a), title: title ? { text: title } : undefined,
    ...(a.log && decades(a) >= 1 ? { dtick: 1 } : {}) });
  const hoverTemplate = (st, parts) => [...parts, ...st.hover.map((h, k) => hoverLine(h, k + parts.length + 1))].join("<br>") + "<extra></extra>";

  function heatmaps(st) {
    const m = METRICS[st.metric], xa = axis(st.x), ya = axis(st.y);
    const facets = st.facet ? axis(st.facet).values.map((_, i) => i) : [null];
    const traces = [], marks = { x: [], y: [], xaxis: [], yaxis: [] };
    let lo = Infinity, hi = -Infinity;
    const cols = Math.min(facets.length, 4), rows = Math.ceil(facets.length / cols);
    const layout = { grid: { rows, columns: cols, pattern: "independent", xgap: 0.08, ygap: 0.18 },
      annotations: [], shapes: [], margin: { t: 30, l: 70, r: 20, b: 60 },
      height: Math.min(300, Math.max(170, 26 * ya.values.length + 90)) * rows + 80 };
    facets.forEach((f, n) => {
      const ax = n ? String(n + 1) : "";
      const z = [], cd = [];
      ya.values.forEach((_, yi) => {
        const zr = [], cr = [];
        xa.values.forEach((_, xi) => {
          const p = { ...st.fixed, [st.x]: xi, [st.y]: yi };
          if (f !== null) p[st.facet] = f;
          const v = zOf(m, value(st.metric, p, st.seeds));
          if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
          zr.push(v);
          cr.push([pointIndex(p), coord(xa, xi), coord(ya, yi), ...st.hover.map((h) => shown(h, value(h, p, st.seeds)))]);
          if (value("diverged", p, st.seeds)) { marks.x.push(xa.values[xi]); marks.y.push(ya.values[yi]); marks.xaxis.push("x" + ax); }
        });
        z.push(zr); cd.push(cr);
      });
      traces.push({ type: "heatmap", x: cells(xa), y: cells(ya), z, customdata: cd, xaxis: "x" + ax, yaxis: "y" + ax,
        showscale: n === 0, hovertemplate: hoverTemplate(st, [`${xa.label}: %{customdata[1]}`, `${ya.label}: %{customdata[2]}`]),
        ...colour(m) });
      const bottom = n + cols >= facets.length, left = n % cols === 0;
      layout["xaxis" + ax] = axisLayout(xa, bottom ? xa.label : null);
      layout["yaxis" + ax] = { ...axisLayout(ya, left ? ya.label : null),
        autorange: axisType(ya) === "category" ? "reversed" : true };
      if (f !== null) layout.annotations.push({ text: `<b>${coord(axis(st.facet), f)}</b>`, showarrow: false,
        xref: `x${ax} domain`, yref: `y${ax} domain`, x: 0.5, y: 1, yanchor: "bottom" });
      const act = f !== null && st.facet === "activation" ? axis("activation").values[f]
        : st.fixed.activation !== undefined ? axis("activation").values[st.fixed.activation] : null;
      if (st.overlay.includes("relu_closed_form") && act === "relu" && st.x === "density" && st.y === "importance")
        for (const [xs, ys] of LOOK.overlays.relu_closed_form || [])
          traces.push({ type: "scatter", mode: "lines", x: xs, y: ys, xaxis: "x" + ax, yaxis: "y" + ax,
            line: { color: "black", width: 1.4 }, hoverinfo: "skip", name: CLOSED_FORM });
    });
    const scale = m.categories ? {} : { zmin: lo, zmax: hi };
    for (const t of traces) if (t.type === "heatmap") Object.assign(t, scale, { colorbar: {
      title: { text: m.label + (m.log ? " (log10)" : ""), side: "right" }, ...colorbarTicks(m, lo, hi) } });
    marks.xaxis.forEach((xa_, i) => traces.push({ type: "scatter", mode: "markers",
      x: [marks.x[i]], y: [marks.y[i]], xaxis: xa_, yaxis: xa_.replace("x", "y"), hoverinfo: "skip",
      name: DIVERGED, marker: { symbol: "x", color: LOOK.diverged, size: 9 } }));
    layout.showlegend = false;
    return [traces, layout];
  }

  function curves(st) {
    const m = METRICS[st.metric], xa = axis(st.x);
    const fa = st.facet ? axis(st.facet) : null;
    const xs = xa.values.map((v) => (st.x_inverse ? 1 / v : v));
    const palette = LOOK.feature_colors;
    const traces = [];
    let top = 0, lo = Infinity, hi = -Infinity;
    (fa ? fa.values.map((_, i) => i) : [null]).forEach((f, n) => {
      const name = f === null ? m.label : coord(fa, f);
      const color = fa && fa.name === "activation" ? LOOK.activation_colors[name] : palette[n % palette.length];
      const ys = [], cd = [], bad = [];
      xa.values.forEach((_, xi) => {
        const p = { ...st.fixed, [st.x]: xi };
        if (f !== null) p[st.facet] = f;
        const v = value(st.metric, p, st.seeds), div = value("diverged", p, st.seeds);
        ys.push(div ? NaN : v);
        if (Number.isFinite(v) && !div) { top = Math.max(top, v); if (v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
        if (div) bad.push(xs[xi]);
        cd.push([pointIndex(p), coord(xa, xi), ...st.hover.map((h) => shown(h, value(h, p, st.seeds)))]);
      });
      traces.push({ type: "scatter", mode: "lines+markers", x: xs, y: ys, name, customdata: cd,
        line: { color, width: 1.6 }, marker: { size: 6, color },
        hovertemplate: `<b>${name}</b><br>` + hoverTemplate(st, [`${xa.label}: %{customdata[1]}`]) });
      if (NSEEDS > 1 && !/^\d+$/.test(st.seeds)) {
        const sx = [], sy = [];
        xa.values.forEach((_, xi) => { for (let k = 0; k < NSEEDS; k++) {
          const p = { ...st.fixed, [st.x]: xi };
          if (f !== null) p[st.facet] = f;
          sx.push(xs[xi]); sy.push(value(st.metric, p, String(k)));
        } });
        traces.push({ type: "scatter", mode: "markers", x: sx, y: sy, hoverinfo: "skip", showlegend: false,
          name: SEED_DOTS, marker: { color, size: 4, opacity: 0.3 } });
      }
      if (bad.length) traces.push({ type: "scatter", mode: "markers", x: bad, y: bad.map(() => 0), hoverinfo: "skip",
        showlegend: false, name: DIVERGED, marker: { symbol: "x", color, size: 9 } });
    });
    const layout = { height: 480, margin: { t: 30, l: 70, r: 20, b: 60 },
      xaxis: axisLayout(xa, st.x_title || (st.x_inverse ? `1/(${xa.label})` : xa.label)),
      yaxis: { title: { text: m.label }, type: m.log ? "log" : "linear", exponentformat: "power",
        ...(m.log && hi / lo >= 100 ? { dtick: 1 } : {}) },
      shapes: st.guides.map((g) => ({ type: "line", xref: "paper", x0: 0, x1: 1, y0: g, y1: g, line: { dash: "dash", color: "#666", width: 1 } })) };
    if (st.guides.length) layout.yaxis.range = [0, Math.max(1.15, Math.min(top * 1.05, 3))];
    return [traces, layout];
  }

  const main = document.getElementById("main");
  // What the marks mean, said once in the caption (as the static figures' legends do).
  const CLOSED_FORM = "black lines: closed-form ReLU boundaries (Wattenberg)", DIVERGED = "×: diverged (NaN/inf)";
  const SEED_DOTS = "faint dots: individual seeds";
  const notes = (traces, st) => [...new Set(traces.map((t) => t.name).filter((n) => [CLOSED_FORM, DIVERGED, SEED_DOTS].includes(n)))]
    .concat(st.kind === "curves" && st.guides_note ? [st.guides_note] : []);
  async function draw() {
    drawControls();
    const [traces, layout] = STATE.kind === "heatmap" ? heatmaps(STATE) : curves(STATE);
    document.getElementById("caption").innerHTML = [...LOOK.caption, modeText(STATE.seeds), ...notes(traces, STATE)].join("  ·  ");
    await Plotly.react(main, traces, layout, { responsive: true, displaylogo: false });
  }

  // ---- the panel: one point's models
  const panel = document.getElementById("panel");
  const PANEL_CONFIG = { displayModeBar: false, responsive: true };
  let PANEL = null;  // {point, seed}
  const metricCell = (name, mi) => {
    const v = METRICS[name].values[mi], td = document.createElement("td");
    td.dataset.metric = name; td.dataset.v = String(v);
    td.textContent = METRICS[name].categories ? METRICS[name].categories[v] ?? "n/a" : fmt(v);
    return td;
  };
  function seedTable(point) {
    const table = document.getElementById("seed-table");
    const names = Object.keys(METRICS).filter((k) => k !== "agree");
    const weights = STATE.panel.includes("weights") ? ["W", "b"].filter((k) => META.model[k]) : [];
    const head = ["model", ...names.map((k) => METRICS[k].label), ...weights];
    table.innerHTML = `<thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead>`;
    const body = table.createTBody();
    const best = BEST[pointIndex(point)];
    for (let k = 0; k < NSEEDS; k++) {
      const mi = modelIndex(point, k), tr = body.insertRow();
      tr.dataset.seed = k;
      if (k === best) tr.className = "best";
      if (k === PANEL.seed) tr.classList.add("shown");
      const th = document.createElement("td");
      th.textContent = seedLabel(k) + (k === best ? " (best)" : "");
      tr.append(th, ...names.map((n) => metricCell(n, mi)));
      for (const w of weights) {
        const td = document.createElement("td"), v = Array.from(modelArray(w, mi));
        td.dataset.model = w; td.dataset.v = JSON.stringify(v);
        td.textContent = "[" + v.map((x) => fmt(x)).join(", ") + "]";
        tr.append(td);
      }
      tr.onclick = () => openPanel(point, k);
    }
  }
  function lossPlot(div, point) {
    const best = BEST[pointIndex(point)], traces = [];
    let lo = Infinity, hi = -Infinity;
    for (let k = 0; k < NSEEDS; k++) {
      const mi = modelIndex(point, k), bad = METRICS.diverged.values[mi], y = Array.from(modelArray("loss_history", mi));
      for (const v of y) if (v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      traces.push({ type: "scatter", mode: "lines", x: META.history_steps, y,
        name: seedLabel(k), line: { width: k === best ? 2.4 : 1, dash: bad ? "dash" : "solid", color: bad ? LOOK.diverged : undefined },
        hovertemplate: `${seedLabel(k)}<br>step %{x}: loss %{y:.4~g}<extra></extra>` });
    }
    Plotly.react(div, traces, { title: { text: "training loss of every seed (best: thick)", font: { size: 13 } },
      xaxis: { title: { text: "step" } }, yaxis: { type: "log", title: { text: "loss" }, exponentformat: "power", ...(hi / lo >= 100 ? { dtick: 1 } : {}) },
      margin: { t: 40, l: 60, r: 10, b: 45 } },
      PANEL_CONFIG);
  }
  function modelPlot(part, div, mi) {
    const n = LOOK.n, m = LOOK.m, layout = { margin: { t: 40, l: 55, r: 10, b: 45 } }, idx = [...Array(n).keys()];
    const W = () => modelArray("W", mi);  // [m, n] row-major
    let traces;
    if (part === "gram") {
      const w = W(), g = idx.map((i) => idx.map((j) => { let s = 0; for (let k = 0; k < m; k++) s += w[k * n + i] * w[k * n + j]; return s; }));
      traces = [{ type: "heatmap", z: g, zmin: -1, zmax: 1, colorscale: LOOK.coolwarm, xaxis: "x", yaxis: "y",
        hovertemplate: "W<sub>%{y}</sub>·W<sub>%{x}</sub> = %{z:.4~g}<extra></extra>", colorbar: { title: { text: "clipped to [-1, 1]" } } },
      { type: "heatmap", z: Array.from(modelArray("b", mi), (v) => [v]), zmin: -1, zmax: 1, colorscale: LOOK.coolwarm,
        showscale: false, xaxis: "x2", yaxis: "y", hovertemplate: "b<sub>%{y}</sub> = %{z:.4~g}<extra></extra>" }];
      Object.assign(layout, { title: { text: "W<sup>T</sup>W (left) and bias b (strip)", font: { size: 13 } },
        xaxis: { domain: [0, 0.84], title: { text: "feature j" }, anchor: "y" },
        xaxis2: { domain: [0.87, 0.92], showticklabels: false, ticks: "", showgrid: false, zeroline: false, anchor: "y" },
        yaxis: { autorange: "reversed", title: { text: "feature i" }, anchor: "x" } });
    } else if (part === "norms") {
      const sup = modelArray("superposition", mi);
      traces = [{ type: "bar", orientation: "h", y: idx, x: Array.from(modelArray("feature_norms", mi)),
        marker: { color: Array.from(sup, (s) => Math.min(Math.max(s, 0), 1)), colorscale: LOOK.viridis, cmin: 0, cmax: 1,
          colorbar: { title: { text: "superposition" } } }, customdata: Array.from(sup),
        hovertemplate: "feature %{y}: ‖W<sub>i</sub>‖ = %{x:.4~g}, superposition %{customdata:.4~g}<extra></extra>" }];
      Object.assign(layout, { title: { text: "feature norms ‖W<sub>i</sub>‖, coloured by superposition", font: { size: 13 } },
        yaxis: { autorange: "reversed", title: { text: "feature i" } }, xaxis: { title: { text: "‖W<sub>i</sub>‖" } } });
    } else if (part === "neurons") {
      const w = W();
      traces = idx.map((i) => ({ type: "bar", x: [...Array(m).keys()], y: [...Array(m).keys()].map((k) => w[k * n + i]),
        name: `feature ${i}`, marker: { color: LOOK.feature_colors[i % LOOK.feature_colors.length] }, showlegend: n <= 20,
        hovertemplate: `feature ${i} on neuron %{x}: W = %{y:.4~g}<extra></extra>` }));
      Object.assign(layout, { barmode: "relative", title: { text: "features of each hidden neuron (positive up, negative down)", font: { size: 13 } },
        xaxis: { title: { text: "hidden neuron k" }, dtick: 1 }, yaxis: { title: { text: "W<sub>k,i</sub> (stacked)" } } });
    } else if (part === "feature_dims") {
      const d = modelArray("feature_dimensionality", mi);
      traces = [{ type: "scatter", mode: "markers", x: idx, y: Array.from(d), marker: { size: 5 },
        hovertemplate: "feature %{x}: D<sub>i</sub> = %{y:.4~g}<extra></extra>" }];
      Object.assign(layout, { title: { text: "per-feature dimensionality D<sub>i</sub>; dotted: TMS's 1, 3/4, 2/3, 1/2, 2/5, 3/8", font: { size: 13 } },
        xaxis: { title: { text: "feature i" } }, yaxis: { range: [-0.03, 1.08], title: { text: "D<sub>i</sub>" } },
        shapes: LOOK.references.map(([y]) => ({ type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { dash: "dot", color: "#8c8c8c", width: 1 } })),
        annotations: LOOK.references.map(([y, t]) => ({ xref: "paper", x: 1, y, text: t, showarrow: false, xanchor: "left", font: { size: 10 } })) });
      layout.margin.r = 35;
    } else if (part.startsWith("bars:")) {
      const name = part.slice(5), v = Array.from(modelArray(name, mi));
      traces = [{ type: "bar", x: v.map((_, i) => i), y: v, hovertemplate: `${name} %{x}: %{y:.4~g}<extra></extra>` }];
      Object.assign(layout, { title: { text: name.replace("_", " "), font: { size: 13 } }, xaxis: { title: { text: "index" } } });
    } else return;
    Plotly.react(div, traces, layout, PANEL_CONFIG);
  }
  function openPanel(point, seed) {
    PANEL = { point, seed: seed ?? BEST[pointIndex(point)] };
    panel.hidden = false;
    document.getElementById("panel-title").textContent = "models at " + POINT_AXES.filter((a) => a.values.length > 1)
      .map((a) => `${plain(a.label)} = ${coord(a, point[a.name])}`).join(" · ");
    const pc = document.getElementById("panel-controls");
    pc.replaceChildren(...POINT_AXES.filter((a) => a.values.length > 1).map((a) =>
      select(a.label, a.values.map((_, j) => [j, coord(a, j)]), point[a.name], (v) => openPanel({ ...point, [a.name]: +v }))));
    if (NSEEDS > 1) pc.append(select("model drawn", [...Array(NSEEDS).keys()].map((k) => [k, seedLabel(k)]), PANEL.seed, (v) => openPanel(point, +v)));
    seedTable(point);
    const plots = document.getElementById("panel-plots");
    const parts = STATE.panel.filter((p) => !["table", "weights"].includes(p));
    plots.replaceChildren(...parts.map((part) => Object.assign(document.createElement("div"), { className: "plot" })));
    parts.forEach((part, i) => {  // every div placed first, so each plot reads its final width
      const div = plots.children[i];
      div.dataset.part = part;
      if (part === "loss") lossPlot(div, point); else modelPlot(part, div, modelIndex(point, PANEL.seed));
    });
    panel.dataset.point = pointIndex(point);
  }

  await draw();
  main.on("plotly_click", (ev) => {
    const pt = ev.points && ev.points[0];
    if (pt && pt.customdata) openPanel(pointOf(pt.customdata[0]));
  });
  if (STATE.open_panel) openPanel({ ...pointOf(0), ...STATE.open_panel });
  document.getElementById("title").innerHTML = LOOK.title;
  if (META.source) document.getElementById("source").textContent = " " + META.source;
  status.textContent = "";
  performance.mark("explorer:drawn");
  window.explorerReady = performance.now();
  document.body.dataset.ready = "1";
})().catch((e) => { console.error(e); document.getElementById("status").textContent = "error: " + e; });
