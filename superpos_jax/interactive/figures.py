"""The explorer's views as plotly figures, for notebooks (they render inline in Jupyter).

The same view states (`views.presets`), colours, hover text and marks as the page, which
draws them in the browser (`explorer.js`): `figure_view` is the page's main chart,
`figure_models` the panel a click opens. tests/test_explore.py checks that a page and
these figures show the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from superpos_jax.interactive import cube as cube_mod
from superpos_jax.interactive import views

CLOSED_FORM = "black lines: closed-form ReLU boundaries (Wattenberg)"
DIVERGED = "×: diverged (NaN/inf)"
SEED_DOTS = "faint dots: individual seeds"


def _cube(result: Any) -> cube_mod.Cube:
  if isinstance(result, cube_mod.Cube):
    return result
  if isinstance(result, str):
    result = cube_mod.load(result)
  return cube_mod.build(result)


def _coord(axis: cube_mod.Axis, i: int) -> str:
  v = axis.values[i]
  return v if isinstance(v, str) else f"{float(f'{v:.3g}'):g}"


def _hover(cube: cube_mod.Cube, state: dict, parts: list[str]) -> str:
  lines = list(parts)
  for k, name in enumerate(state["hover"]):
    m = cube.metrics[name]
    lines.append(f"{m.label}: %{{customdata[{k + len(parts) + 1}]{'' if m.categories else ':.4~g'}}}")
  return "<br>".join(lines) + "<extra></extra>"


def _shown(cube: cube_mod.Cube, name: str, v: float) -> Any:
  m = cube.metrics[name]
  return m.categories[int(v)] if m.categories and np.isfinite(v) else float(v)


def _z(metric: cube_mod.Metric, v: float) -> float:
  if metric.log:
    return float(np.log10(v)) if v > 0 else np.nan
  return float(v)


def _colour(metric: cube_mod.Metric, look: dict, lo: float, hi: float) -> dict:
  title = metric.label + (" (log10)" if metric.log else "")
  if metric.categories:
    K = len(metric.categories)
    scale = [s for i, c in enumerate(metric.colors) for s in ([i / K, c], [(i + 1) / K, c])]
    return dict(colorscale=scale, zmin=-0.5, zmax=K - 0.5, colorbar=dict(
        title=dict(text=title, side="right"), tickvals=list(range(K)),
        ticktext=list(metric.categories)))
  bar = dict(title=dict(text=title, side="right"))
  if metric.log:
    ticks = list(range(int(np.ceil(lo)), int(np.floor(hi)) + 1))
    bar.update(tickvals=ticks, ticktext=[f"1e{t}" for t in ticks])
  return dict(colorscale=look["viridis"], zmin=lo, zmax=hi, colorbar=bar)


def _axis_layout(axis: cube_mod.Axis, title: str | None) -> dict:
  kind = "category" if isinstance(axis.values[0], str) else ("log" if axis.log else "linear")
  out = dict(type=kind, title=dict(text=title) if title else None)
  if axis.log and np.log10(max(axis.values) / min(axis.values)) >= 1:
    out["dtick"] = 1
  return out


def _flat(cube: cube_mod.Cube, point: dict[str, int]) -> int:
  """The point's flat index over the non-seed axes (what the page's clicks carry)."""
  return int(np.ravel_multi_index([point[a.name] for a in cube.point_axes],
                                  [len(a.values) for a in cube.point_axes]))


def _grid(cube: cube_mod.Cube, state: dict, f: int | None):
  """One heatmap's z `[y][x]`, hover data `[y][x][...]` and diverged cells `[(yi, xi)]`."""
  m, xa, ya = cube.metrics[state["metric"]], cube.axis(state["x"]), cube.axis(state["y"])
  z, cd, bad = [], [], []
  for yi in range(len(ya.values)):
    zr, cr = [], []
    for xi in range(len(xa.values)):
      p = dict(state["fixed"], **{state["x"]: xi, state["y"]: yi})
      if f is not None:
        p[state["facet"]] = f
      zr.append(_z(m, cube.value(state["metric"], p, state["seeds"])))
      if cube.value("diverged", p, state["seeds"]):
        bad.append((yi, xi))
      cr.append([_flat(cube, p), _coord(xa, xi), _coord(ya, yi)] +
                [_shown(cube, h, cube.value(h, p, state["seeds"])) for h in state["hover"]])
    z.append(zr)
    cd.append(cr)
  return z, cd, bad


def _heatmaps(cube: cube_mod.Cube, state: dict, look: dict):
  """The main chart as heatmaps: (traces, layout, notes); mirrors `heatmaps` in explorer.js."""
  m, xa, ya = cube.metrics[state["metric"]], cube.axis(state["x"]), cube.axis(state["y"])
  facets = list(range(len(cube.axis(state["facet"]).values))) if state["facet"] else [None]
  cols = min(len(facets), 4)
  rows = -(-len(facets) // cols)
  traces, layout, notes, marks = [], dict(annotations=[], showlegend=False), [], []
  cells = lambda a: look["edges"].get(a.name, a.values) if a.log else a.values
  for n, f in enumerate(facets):
    ax = str(n + 1) if n else ""
    z, cd, bad = _grid(cube, state, f)
    marks += [(xa.values[xi], ya.values[yi], ax) for yi, xi in bad]
    traces.append(dict(type="heatmap", x=cells(xa), y=cells(ya), z=z, customdata=cd,
                       xaxis="x" + ax, yaxis="y" + ax, showscale=n == 0,
                       hovertemplate=_hover(cube, state, [f"{xa.label}: %{{customdata[1]}}",
                                                          f"{ya.label}: %{{customdata[2]}}"])))
    layout["xaxis" + ax] = _axis_layout(xa, xa.label if n + cols >= len(facets) else None)
    layout["yaxis" + ax] = dict(_axis_layout(ya, ya.label if n % cols == 0 else None),
                                autorange="reversed" if isinstance(ya.values[0], str) else True)
    if f is not None:
      layout["annotations"].append(dict(text=f"<b>{_coord(cube.axis(state['facet']), f)}</b>",
                                        showarrow=False, xref=f"x{ax} domain",
                                        yref=f"y{ax} domain", x=0.5, y=1, yanchor="bottom"))
    act = (cube.axis("activation").values[f] if f is not None and state["facet"] == "activation"
           else cube.axis("activation").values[state["fixed"]["activation"]]
           if "activation" in state["fixed"] else None)
    if ("relu_closed_form" in state["overlay"] and act == "relu"
        and (state["x"], state["y"]) == ("density", "importance")):
      for xs, ys in look["overlays"].get("relu_closed_form", []):
        traces.append(dict(type="scatter", mode="lines", x=xs, y=ys, xaxis="x" + ax,
                           yaxis="y" + ax, line=dict(color="black", width=1.4),
                           hoverinfo="skip", name=CLOSED_FORM))
      notes.append(CLOSED_FORM)
  traces += [dict(type="scatter", mode="markers", x=[x], y=[y], xaxis="x" + ax, yaxis="y" + ax,
                  hoverinfo="skip", name=DIVERGED,
                  marker=dict(symbol="x", color=look["diverged"], size=9)) for x, y, ax in marks]
  notes += [DIVERGED] if marks else []
  finite = [v for t in traces if t["type"] == "heatmap" for row in t["z"] for v in row
            if np.isfinite(v)]
  lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
  for t in traces:
    if t["type"] == "heatmap":
      t.update(_colour(m, look, lo, hi))
  layout.update(grid=dict(rows=rows, columns=cols, pattern="independent", xgap=0.08, ygap=0.18),
                height=min(300, max(170, 26 * len(ya.values) + 90)) * rows + 80,
                margin=dict(t=30, l=70, r=20, b=60))
  return traces, layout, notes


def _curves(cube: cube_mod.Cube, state: dict, look: dict):
  """The main chart as curves: (traces, layout, notes); mirrors `curves` in explorer.js."""
  m, xa = cube.metrics[state["metric"]], cube.axis(state["x"])
  fa = cube.axis(state["facet"]) if state["facet"] else None
  xs = [1 / v if state["x_inverse"] else v for v in xa.values]
  traces, top, positive = [], 0.0, []
  for n, f in enumerate(range(len(fa.values)) if fa else [None]):
    name = m.label if f is None else _coord(fa, f)
    color = (look["activation_colors"][name] if fa is not None and fa.name == "activation"
             else look["feature_colors"][n % len(look["feature_colors"])])
    ys, cd, bad_x = [], [], []
    for xi in range(len(xa.values)):
      p = dict(state["fixed"], **{state["x"]: xi})
      if f is not None:
        p[state["facet"]] = f
      v = cube.value(state["metric"], p, state["seeds"])
      bad = cube.value("diverged", p, state["seeds"])
      ys.append(np.nan if bad else float(v))
      bad_x += [xs[xi]] if bad else []
      top = max(top, v) if np.isfinite(v) and not bad else top
      positive += [v] if np.isfinite(v) and not bad and v > 0 else []
      cd.append([_flat(cube, p), _coord(xa, xi)] + [_shown(cube, h, cube.value(h, p, state["seeds"]))
                                          for h in state["hover"]])
    traces.append(dict(type="scatter", mode="lines+markers", x=xs, y=ys, name=name, customdata=cd,
                       line=dict(color=color, width=1.6), marker=dict(size=6, color=color),
                       hovertemplate=f"<b>{name}</b><br>" + _hover(
                           cube, state, [f"{xa.label}: %{{customdata[1]}}"])))
    if cube.n_seeds > 1 and not state["seeds"].isdigit():
      sx, sy = [], []
      for xi in range(len(xa.values)):
        p = dict(state["fixed"], **{state["x"]: xi})
        if f is not None:
          p[state["facet"]] = f
        sx += [xs[xi]] * cube.n_seeds
        sy += [float(cube.value(state["metric"], p, str(k))) for k in range(cube.n_seeds)]
      traces.append(dict(type="scatter", mode="markers", x=sx, y=sy, hoverinfo="skip",
                         showlegend=False, name=SEED_DOTS,
                         marker=dict(color=color, size=4, opacity=0.3)))
    if bad_x:
      traces.append(dict(type="scatter", mode="markers", x=bad_x, y=[0] * len(bad_x),
                         hoverinfo="skip", showlegend=False, name=DIVERGED,
                         marker=dict(symbol="x", color=color, size=9)))
  title = state.get("x_title") or (f"1/({xa.label})" if state["x_inverse"] else xa.label)
  layout = dict(height=480, margin=dict(t=30, l=70, r=20, b=60), xaxis=_axis_layout(xa, title),
                yaxis=dict(title=dict(text=m.label), type="log" if m.log else "linear",
                           exponentformat="power",
                           **({"dtick": 1} if m.log and positive and max(positive) / min(positive) >= 100
                              else {})),
                shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=g, y1=g,
                             line=dict(dash="dash", color="#666", width=1))
                        for g in state["guides"]])
  if state["guides"]:
    layout["yaxis"]["range"] = [0, max(1.15, min(top * 1.05, 3))]
  notes = [note for note in (SEED_DOTS, DIVERGED) if any(t["name"] == note for t in traces)]
  return traces, layout, notes + ([state["guides_note"]] if state["guides_note"] else [])


def figure_view(result: Any, view: str | None = None, **changes: Any):
  """A view of the explorer page as a plotly figure.

  Args:
    result: a `SweepResult`, an `SAEResult`, a result file's path, or a `Cube`.
    view: a preset name of `views.presets` (default: the page's first view).
    **changes: view-state fields to change, e.g. `seeds="typical"`, `metric="eval_loss"`,
      `fixed={"lr": 1}` (see `views`).

  Returns:
    `plotly.graph_objects.Figure`; its title carries the caption.
  """
  import plotly.graph_objects as go
  cube = _cube(result)
  offered = views.presets(cube)
  state = dict(offered[view or next(iter(offered))], **changes)
  look = views.look(cube)
  draw = _heatmaps if state["kind"] == "heatmap" else _curves
  traces, layout, notes = draw(cube, state, look)
  seeds = ("1 seed" if cube.n_seeds == 1 else f"best of {cube.n_seeds} seeds (lowest eval loss)"
           if state["seeds"] == "best" else look["typical"] if state["seeds"] == "typical"
           else f"seed {state['seeds']}")
  caption = "  ·  ".join([*look["caption"], seeds, *notes])
  layout["title"] = dict(text=f"{look['title']}<br><sup>{caption}</sup>", font=dict(size=14))
  layout["margin"]["t"] = 90
  layout["template"] = "none"  # plotly.js's own look, as on the page
  return go.Figure(data=traces, layout=layout)


def _nearest(axis: cube_mod.Axis, value: Any) -> int:
  """Index of `value` on `axis`: a name exactly, a number the nearest (in log on log axes)."""
  if isinstance(axis.values[0], str):
    if value not in axis.values:
      raise KeyError(f"{axis.name}={value!r} is not in this result; values: {axis.values}")
    return axis.values.index(value)
  values = np.asarray(axis.values, np.float64)
  if axis.log and float(value) > 0:
    return int(np.argmin(np.abs(np.log(values) - np.log(float(value)))))
  return int(np.argmin(np.abs(values - float(value))))


def _point(cube: cube_mod.Cube, coords: dict[str, Any]) -> dict[str, int]:
  """Grid indices of the point nearest the coordinate values `coords` (others: the first)."""
  unknown = set(coords) - {a.name for a in cube.point_axes}
  if unknown:
    raise KeyError(f"unknown axes {sorted(unknown)}; axes: {[a.name for a in cube.point_axes]}")
  return {a.name: _nearest(a, coords[a.name]) if a.name in coords else 0 for a in cube.point_axes}


def _model_traces(cube: cube_mod.Cube, part: str, mi: tuple, look: dict) -> list[dict]:
  """One panel plot's traces for the model at grid index `mi` (as explorer.js draws them)."""
  n, idx = cube.n, list(range(cube.n))
  arr = lambda name: np.asarray(cube.model[name][mi], np.float64)
  if part == "gram":
    W = arr("W")
    return [dict(type="heatmap", z=(W.T @ W).tolist(), zmin=-1, zmax=1, colorscale=look["coolwarm"],
                 hovertemplate="W<sub>%{y}</sub>·W<sub>%{x}</sub> = %{z:.4~g}<extra></extra>"),
            dict(type="heatmap", z=arr("b")[:, None].tolist(), x=[n + 0.5], zmin=-1, zmax=1,
                 showscale=False, colorscale=look["coolwarm"],
                 hovertemplate="b<sub>%{y}</sub> = %{z:.4~g}<extra></extra>")]
  if part == "norms":
    sup = arr("superposition")
    return [dict(type="bar", orientation="h", y=idx, x=arr("feature_norms").tolist(),
                 customdata=sup.tolist(), marker=dict(color=np.clip(sup, 0, 1).tolist(),
                                                      colorscale=look["viridis"], cmin=0, cmax=1),
                 hovertemplate="feature %{y}: ‖W<sub>i</sub>‖ = %{x:.4~g}, superposition "
                               "%{customdata:.4~g}<extra></extra>")]
  if part == "neurons":
    W = arr("W")
    return [dict(type="bar", x=list(range(cube.m)), y=W[:, i].tolist(), name=f"feature {i}",
                 marker=dict(color=look["feature_colors"][i % len(look["feature_colors"])]),
                 showlegend=n <= 20, hovertemplate=f"feature {i} on neuron %{{x}}: W = %{{y:.4~g}}"
                                                   "<extra></extra>") for i in idx]
  if part == "feature_dims":
    return [dict(type="scatter", mode="markers", x=idx, y=arr("feature_dimensionality").tolist(),
                 marker=dict(size=5),
                 hovertemplate="feature %{x}: D<sub>i</sub> = %{y:.4~g}<extra></extra>")]
  name = part.split(":", 1)[1]
  v = arr(name)
  return [dict(type="bar", x=list(range(v.size)), y=v.tolist(),
               hovertemplate=f"{name} %{{x}}: %{{y:.4~g}}<extra></extra>")]


def _table(cube: cube_mod.Cube, point: dict[str, int], weights: bool) -> dict:
  """The panel's table: one row per seed (model), the metrics and, for tiny models, W and b."""
  names = [k for k in cube.metrics if k != "agree"]
  best = cube.seed_of(point, "best")
  rows = []
  for k in range(cube.n_seeds):
    mi = cube.model_index(point, k)
    row = [f"seed {k}" + (" (best)" if k == best else "")]
    for name in names:
      v, m = cube.metrics[name].values[mi], cube.metrics[name]
      row.append(m.categories[int(v)] if m.categories else f"{float(v):.4g}")
    if weights:
      row += ["[" + ", ".join(f"{v:.4g}" for v in np.asarray(cube.model[w][mi]).ravel()) + "]"
              for w in ("W", "b")]
    rows.append(row)
  header = ["model", *[cube.metrics[k].label for k in names], *(["W", "b"] if weights else [])]
  return dict(header=dict(values=header), cells=dict(values=[list(c) for c in zip(*rows)]))


def figure_models(result: Any, seed: int | None = None, view: str | None = None, **coords: Any):
  """The panel a click on a grid point opens, as one plotly figure.

  Args:
    result: a `SweepResult`, an `SAEResult`, a result file's path, or a `Cube`.
    seed: the seed (flat over the seed axes) whose weights are drawn (default: the best).
    view: the preset whose panel to draw (default: the page's first view).
    **coords: coordinate values of the point, e.g. `activation="relu", density=0.1`
      (a number picks the grid's nearest value; axes not given: their first value).

  Returns:
    `plotly.graph_objects.Figure`: the table of every seed, then every seed's loss curve
    and the drawn model's plots.
  """
  import plotly.graph_objects as go
  from plotly.subplots import make_subplots
  cube = _cube(result)
  state = views.presets(cube)[view or next(iter(views.presets(cube)))]
  look, point = views.look(cube), _point(cube, coords)
  seed = cube.seed_of(point, "best") if seed is None else seed
  parts = ["loss"] + [p for p in state["panel"] if p not in ("table", "weights", "loss")]
  rows = 1 + -(-len(parts) // 2)
  table_px, plot_px = 70 + 46 * cube.n_seeds, 330
  titles = {"loss": "training loss of every seed (best: thick)", "gram": "WᵀW and bias b (strip)",
            "norms": "feature norms ‖W<sub>i</sub>‖, coloured by superposition",
            "neurons": "features of each hidden neuron", "feature_dims": "D<sub>i</sub> per feature"}
  fig = make_subplots(rows=rows, cols=2, specs=[[{"type": "table", "colspan": 2}, None]] +
                      [[{}, {}] for _ in range(rows - 1)],
                      row_heights=[table_px] + [plot_px] * (rows - 1),
                      subplot_titles=["", *[titles.get(p, p) for p in parts]],
                      vertical_spacing=0.06)
  fig.add_trace(go.Table(**_table(cube, point, "weights" in state["panel"])), row=1, col=1)
  steps = np.asarray(cube.history_steps).tolist()
  for i, part in enumerate(parts):
    r, c = 2 + i // 2, 1 + i % 2
    if part == "loss":
      traces = [dict(type="scatter", mode="lines", x=steps, name=f"seed {k}",
                     y=np.asarray(cube.model["loss_history"][cube.model_index(point, k)]).tolist(),
                     line=dict(width=2.4 if k == cube.seed_of(point, "best") else 1))
                for k in range(cube.n_seeds)]
      fig.update_yaxes(type="log", row=r, col=c)
      fig.update_xaxes(title_text="step", row=r, col=c)
    else:
      traces = _model_traces(cube, part, cube.model_index(point, seed), look)
    for t in traces:
      kind = {"heatmap": go.Heatmap, "bar": go.Bar, "scatter": go.Scatter}[t.pop("type")]
      fig.add_trace(kind(**t), row=r, col=c)
    if part in ("gram", "norms"):
      fig.update_yaxes(autorange="reversed", row=r, col=c)
  where = " · ".join(f"{a.label} = {_coord(a, point[a.name])}" for a in cube.point_axes
                     if len(a.values) > 1)
  fig.update_layout(height=table_px + plot_px * (rows - 1) + 160, barmode="relative",
                    showlegend=False, template="none",
                    title=dict(text=f"{look['title']}<br>"
                                    f"<sup>models at {where}; drawn: seed {seed}</sup>"))
  return fig
