"""The explorer's views: one generic view and its presets, and the look they share.

A view state is a JSON-able dict read alike by the page's script (`explorer.js`) and the
notebook figures (`figures.py`):

  kind      "heatmap" (x × y per facet) or "curves" (x, one line per facet value)
  x, y      axis names (y only for heatmaps); `x_inverse` plots 1/x (D* against 1/(1-S))
  facet     an axis: one panel per value (heatmap) or one line per value (curves), or None
  metric    the coloured / plotted metric; `hover`: the metrics every hover lists
  seeds     "best", "typical" or a seed's flat index as a string ("3")
  fixed     {axis: index} of every other non-seed axis
  overlay   ["relu_closed_form"]: the closed-form n = 2 ReLU boundaries on the relu panel
  guides    y values of dashed guide lines (curves), `guides_note` says what they are
  panel     what a click opens: "table", "loss", "weights", "gram", "norms", "neurons",
            "feature_dims", "bars:<model array>"; `open_panel`: {axis: index} of a point
            whose panel the page opens with (None: none until a click)

The presets (the study's three figures, and a default for anything else) only fill in
these fields; there is no other code path per figure.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from superpos_jax import theory
from superpos_jax.interactive.cube import Cube
from superpos_jax.phases import BOTH, FEATURE1, FEATURE2
from superpos_jax.plotting import captions
from superpos_jax.plotting.dims import FEATURE_DIM_REFERENCES
from superpos_jax.plotting.style import (DIVERGED_EDGE, activation_colors, feature_colors,
                                         log_edges)

# Mathtext of the static captions -> the HTML subset plotly renders.
_MATH = [(r"\\\|", "‖"), (r"\\top", "ᵀ"), (r"\\Sigma", "Σ"), (r"\\hat W", "Ŵ"),
         (r"\\neq", "≠"), (r"\\cdot", "·"), (r"\\ldots", "…"), (r"\\approx", "≈"),
         (r"\\alpha", "α"), (r"\\lambda", "λ")]


def html_text(text: str) -> str:
  """A static caption phrase (matplotlib mathtext) as plotly's HTML subset."""
  def math(m):
    body = m.group(1)
    for pattern, repl in _MATH:
      body = re.sub(pattern, repl, body)
    body = re.sub(r"_\{([^}]*)\}|_(\w)", lambda s: f"<sub>{s.group(1) or s.group(2)}</sub>", body)
    body = re.sub(r"\^\{([^}]*)\}|\^(\w)", lambda s: f"<sup>{s.group(1) or s.group(2)}</sup>", body)
    return body.replace("{", "").replace("}", "").replace("\\", "")
  return re.sub(r"\$([^$]*)\$", math, text)


# The per-model arrays each panel part draws ("bars:<name>" draws <name>).
PANEL_ARRAYS = {"table": (), "weights": ("W", "b"), "loss": ("loss_history",), "gram": ("W", "b"),
                "norms": ("feature_norms", "superposition"), "neurons": ("W",),
                "feature_dims": ("feature_dimensionality",)}


def _varied(cube: Cube, numeric: bool = False) -> list[str]:
  return [a.name for a in cube.point_axes if len(a.values) > 1
          and (not numeric or not isinstance(a.values[0], str))]


def _fixed(cube: Cube, used: set) -> dict[str, int]:
  return {a.name: 0 for a in cube.point_axes if a.name not in used}


def _panel(cube: Cube) -> list[str]:
  if cube.kind == "sae":
    return ["table", "loss", "bars:max_cosine", "bars:frequency"]
  if cube.n * cube.m <= 8:
    return ["table", "weights", "loss"]
  if cube.n <= 40:
    return ["table", "gram", "norms", "neurons", "loss"]
  return ["table", "feature_dims", "norms", "loss"]


def _state(cube: Cube, kind: str, x: str, y: str | None, facet: str | None, metric: str,
           hover: list[str], **extra: Any) -> dict[str, Any]:
  hover = [h for h in dict.fromkeys([metric, *hover]) if h in cube.metrics]
  state = dict(kind=kind, x=x, y=y, facet=facet, metric=metric, hover=hover, seeds="best",
               fixed=_fixed(cube, {x, y, facet}), overlay=[], guides=[], guides_note="",
               x_inverse=False, x_title=None, open_panel=None, panel=_panel(cube))
  state.update(extra)
  return state


def _sparsest_relu(cube: Cube) -> dict[str, int]:
  """The point a page opens its panel at: relu (or the first activation), sparsest density."""
  acts = cube.axis("activation").values
  return {"activation": acts.index("relu") if "relu" in acts else 0,
          "density": int(np.argmin(cube.axis("density").values))}


def generic(cube: Cube) -> dict[str, Any]:
  """The default view of any result: the first two varied numeric axes as x and y (one
  numeric axis: curves), faceted by activation when it varies, coloured by eval loss."""
  numeric = _varied(cube, numeric=True) or [a.name for a in cube.point_axes
                                            if not isinstance(a.values[0], str)][:1]
  facet = "activation" if "activation" in _varied(cube) else None
  metric = "mmcs" if cube.kind == "sae" else "eval_loss"
  hover = ["eval_loss", "dims_per_feature", "reconstruction_error", "l0"]
  if len(numeric) >= 2:
    return _state(cube, "heatmap", numeric[0], numeric[1], facet, metric, hover)
  return _state(cube, "curves", numeric[0], None, facet, metric, hover)


def presets(cube: Cube) -> dict[str, dict[str, Any]]:
  """The views offered for `cube`, the first one the page opens with."""
  out = {}
  varied = _varied(cube)
  if "phase" in cube.metrics and {"density", "importance"} <= set(varied):
    out["phase diagram"] = _state(
        cube, "heatmap", "density", "importance", "activation", "phase",
        ["norm_0", "norm_1", "eval_loss", "agree"], overlay=["relu_closed_form"])
  if cube.kind == "sweep" and 2 < cube.n <= 40 and "density" in varied:
    out["feature matrices"] = _state(
        cube, "heatmap", "density", "activation", None, "embedded_norm",
        ["eval_loss", "dims_per_feature"], open_panel=_sparsest_relu(cube))
  if cube.kind == "sweep" and cube.n > 40 and "density" in varied:
    out["dimensions per feature"] = _state(
        cube, "curves", "density", None, "activation", "dims_per_feature",
        ["frobenius_sq", "embedded_dims", "eval_loss"], x_inverse=True, guides=[1.0, 0.5],
        guides_note="dashed: 1 and 1/2 (TMS)", x_title="1/(1-S)  (inverse density)")
  out["any axes"] = generic(cube)
  return out


def relu_boundaries(density: list[float], importance: list[float],
                    resolution: int = 400) -> list[list[list[float]]]:
  """The closed-form n = 2 ReLU phase boundaries as polylines `[[xs, ys], ...]`, traced
  by contourpy (matplotlib's own contouring) at the levels `plot_relu_boundaries` draws."""
  import contourpy
  s = np.geomspace(min(0.01, min(density)), min(max(1.0, max(density)), 1.0), resolution)
  r = np.geomspace(min(0.1, min(importance)), max(10.0, max(importance)), resolution)
  phase = theory.relu_closed_form_phase(s[None, :], r[:, None]).astype(np.float64)
  gen = contourpy.contour_generator(s, r, phase)
  lines = []
  for level in ((FEATURE1 + BOTH) / 2, (BOTH + FEATURE2) / 2):
    lines += [[line[:, 0].round(6).tolist(), line[:, 1].round(6).tolist()]
              for line in gen.lines(level)]
  return lines


def _hex(color) -> str:
  from matplotlib import colors as mcolors
  return mcolors.to_hex(color)


def colorscale(name: str, steps: int = 11) -> list[list[Any]]:
  """A matplotlib colormap (the static figures') as a plotly colour scale."""
  import matplotlib
  cmap = matplotlib.colormaps[name]
  return [[i / (steps - 1), _hex(cmap(i / (steps - 1)))] for i in range(steps)]


def look(cube: Cube) -> dict[str, Any]:
  """The settings both renderers draw with: title, caption, colours, cell edges, overlays."""
  res = cube.result
  toy = res.toy_spec if cube.kind == "sae" else res.spec
  if cube.kind == "sae":
    sae = res.sae_spec
    phrases = [f"n={toy.n}, m={toy.m}, {toy.model} toy models, {toy.steps:,} steps",
               f"SAEs: {sae.steps:,} Adam steps of {sae.batch_size}",
               "first importance, lr, weight decay and init scale (as the summaries)"]
    title = "SAE feature recovery"
  else:
    on_axis = "importance" in _varied(cube)
    phrases = [html_text(p) for p in captions.caption(res, "best", {}, importance_on_axis=on_axis)[:-1]]
    if "phase" in cube.metrics:
      phrases.append(f"encoded: ‖W<sub>i</sub>‖ > {toy.phase_encoded:g}, not encoded: "
                     f"‖W<sub>i</sub>‖ < {toy.phase_not_encoded:g}, otherwise ambiguous")
    title = f"n={toy.n}, m={toy.m}: {res.spec.model} model, {res.spec.data} features"
  edges = {a.name: log_edges(np.asarray(a.values)).tolist() for a in cube.axes
           if a.log and len(a.values) > 0}
  overlays = {}
  if {"density", "importance"} <= {a.name for a in cube.axes} and "phase" in cube.metrics:
    overlays["relu_closed_form"] = relu_boundaries(cube.axis("density").values,
                                                   cube.axis("importance").values)
  names = cube.axis("activation").values if "activation" in [a.name for a in cube.axes] else []
  return {"title": title, "caption": phrases, "typical": cube.typical_label, "edges": edges,
          "overlays": overlays, "activation_colors": activation_colors(names),
          "feature_colors": [_hex(c) for c in feature_colors(max(cube.n, 1))],
          "coolwarm": colorscale("coolwarm"), "viridis": colorscale("viridis"),
          "diverged": _hex(DIVERGED_EDGE), "references": [list(r) for r in FEATURE_DIM_REFERENCES],
          "n": cube.n, "m": cube.m}
