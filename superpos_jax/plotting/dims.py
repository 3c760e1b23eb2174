"""How many dimensions each feature gets, against sparsity (Elhage et al. 2022 §6).

`D* = m / ‖W‖_F²` per model (one line per activation) and the per-feature
dimensionality `D_i` (one panel per activation), both against `1/(1-S)`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import lines as mlines
from matplotlib import transforms
from matplotlib.figure import Figure

from superpos_jax import results
from superpos_jax.plotting.captions import caption, finish
from superpos_jax.plotting.panels import activation_panels, prepare
from superpos_jax.plotting.style import (DIVERGED_EDGE, activation_colors, diverged_legend,
                                         diverged_marker)

# TMS's reference values of the per-feature dimensionality D_i (Elhage et al. §6):
# tegum-product geometries (digon 1/2, triangle 2/3, tetrahedron 3/4, pentagon 2/5, ...).
FEATURE_DIM_REFERENCES = ((1.0, "1"), (3 / 4, "3/4"), (2 / 3, "2/3"), (1 / 2, "1/2"),
                          (2 / 5, "2/5"), (3 / 8, "3/8"))


def plot_dims_per_feature(ax, density: np.ndarray, dims: np.ndarray, *, color: Any, label: str,
                          seeds: np.ndarray | None = None, diverged: np.ndarray | None = None
                          ) -> None:
  """One activation's `D*` against `1/(1-S)`: line + markers, faint dots per seed.

  Args:
    ax: the Axes (log x).
    density: densities `[D]`.
    dims: `D*: [D]` after seed reduction (inf/NaN are left out).
    color, label: line style.
    seeds: optional `D*` of every seed `[D, S]`, drawn as faint dots.
    diverged: optional bool `[D]`: crosses in the line's colour on the x axis.
  """
  x = 1.0 / np.asarray(density, np.float64)
  order = np.argsort(x)
  y = np.where(np.isfinite(dims), dims, np.nan)
  if diverged is not None:
    y = np.where(diverged, np.nan, y)
  ax.plot(x[order], y[order], "o-", color=color, label=label, markersize=3.5, linewidth=1.4)
  if seeds is not None and seeds.shape[-1] > 1:
    ys = np.where(np.isfinite(seeds), seeds, np.nan)
    ax.plot(np.repeat(x, ys.shape[-1]), ys.ravel(), ".", color=color, alpha=0.3, markersize=3)
  if diverged is not None and np.any(diverged):
    # Coloured like the line, since one axes holds every activation.
    ax.plot(x[diverged], np.zeros(int(np.sum(diverged))), "x", color=color, markersize=7,
            markeredgewidth=1.6,
            transform=transforms.blended_transform_factory(ax.transData, ax.transAxes),
            clip_on=False, zorder=5)


def _dims_legend(ax, any_diverged: bool) -> None:
  """Activations, the TMS reference lines and (if any) the diverged crosses, right of `ax`."""
  handles, _ = ax.get_legend_handles_labels()
  handles.append(mlines.Line2D([], [], color="0.4", linestyle="--", label="1 and 1/2 (TMS)"))
  if any_diverged:
    handles.append(mlines.Line2D([], [], color="0.3", marker="x", linestyle="none",
                                 markeredgewidth=1.6,
                                 label="diverged (NaN/inf),\nactivation's colour"))
  ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
            title="activation", title_fontsize=9)


def figure_dims_per_feature(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                            seed_rule: str = "best", weight_decay: Any = None,
                            init_scale: Any = None) -> Figure:
  """Dimensions per feature `D* = m / ‖W‖_F²` against `1/(1-S)` (Elhage et al. §6).

  Args:
    result: a sweep result (the study's n=200, m=20 uniform-importance sweep).
    importance, lr, weight_decay, init_scale: which value of each axis to show
      (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").

  Returns:
    The figure: one line per activation in a single panel.
  """
  res, red, chosen, acts, dens = prepare(result, importance, lr, seed_rule,
                                         weight_decay=weight_decay, init_scale=init_scale)
  colors = activation_colors(acts)
  fig = Figure(figsize=(8.5, 5.0), layout="constrained")
  ax = fig.subplots()
  ax.set_xscale("log")
  for a, act in enumerate(acts):
    seeds = res["dims_per_feature"][a] if "seed" in res.coords else None
    plot_dims_per_feature(ax, dens, red["dims_per_feature"][a], color=colors[act], label=act,
                          seeds=seeds, diverged=red["diverged"][a])
  for y in (1.0, 0.5):
    ax.axhline(y, color="0.4", linestyle="--", linewidth=0.9, zorder=0)
  finite = red["dims_per_feature"][np.isfinite(red["dims_per_feature"]) & ~red["diverged"]]
  ax.set_ylim(0, max(1.15, min(float(finite.max()) * 1.05, 3.0)) if finite.size else 1.15)
  ax.set_xlabel("1/(1-S)  (inverse density)")
  ax.set_ylabel(r"dimensions per feature $D^* = m / \|W\|_F^2$")
  _dims_legend(ax, bool(np.any(red["diverged"])))
  note = [r"$D^*$ assumes embedded features have $\|W_i\| \approx 1$;",
          r"sigmoid and SoLU grow $\|W\|_F^2$ past n, so for them $D^*$ is not "
          "'features per dimension'."]
  if len(res.coords.get("seed", [])) > 1:
    note.append("Faint dots: individual seeds.")
  return finish(fig, "Dimensions per feature vs sparsity", caption(res, seed_rule, chosen), note)


def plot_feature_dimensionality(ax, density: np.ndarray, dims: np.ndarray, *, color: Any,
                                diverged: np.ndarray | None = None, jitter: float = 0.06,
                                seed: int = 0) -> None:
  """Scatter of per-feature dimensionalities `D_i` at each density, x = `1/(1-S)`.

  Args:
    ax: the Axes (log x).
    density: densities `[D]`.
    dims: `D_i: [D, n]`.
    color: marker colour.
    diverged: optional bool `[D]`: grey crosses on the x axis instead of points.
    jitter: half-width of the multiplicative x jitter, in natural-log units.
    seed: seed of the (deterministic) jitter.
  """
  rng = np.random.default_rng(seed)
  dims = np.asarray(dims, np.float64)
  x = np.broadcast_to(1.0 / np.asarray(density, np.float64)[:, None], dims.shape)
  xj = x * np.exp(rng.uniform(-jitter, jitter, dims.shape))
  keep = np.isfinite(dims)
  if diverged is not None:
    keep &= ~np.asarray(diverged, bool)[:, None]
  ax.scatter(xj[keep], dims[keep], s=6, color=color, alpha=0.45, linewidths=0)
  if diverged is not None and np.any(diverged):
    ax.plot(1.0 / np.asarray(density)[diverged], np.zeros(int(np.sum(diverged))), "x",
            color=DIVERGED_EDGE, zorder=5, clip_on=False)


def _feature_dim_references(ax) -> None:
  trans = transforms.blended_transform_factory(ax.transAxes, ax.transData)
  for y, label in FEATURE_DIM_REFERENCES:
    ax.axhline(y, color="0.55", linestyle=":", linewidth=0.8, zorder=0)
    # 2/5 and 3/8 are 0.025 apart: nudge their labels away from each other.
    va = "top" if label == "3/8" else ("bottom" if label == "2/5" else "center")
    ax.text(1.01, y, label, transform=trans, fontsize=7, va=va, ha="left", color="0.3")


def figure_feature_dimensionality(result: results.SweepResult, *, importance: Any = None,
                                  lr: Any = None, seed_rule: str = "best",
                                  weight_decay: Any = None, init_scale: Any = None) -> Figure:
  """Per-feature dimensionality `D_i` per density, one panel per activation (TMS §6).

  Args:
    result: a sweep result (the study's n=200, m=20 sweep).
    importance, lr, weight_decay, init_scale: which value of each axis to show
      (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").

  Returns:
    The figure: one panel per activation, y axes shared.
  """
  res, red, chosen, acts, dens = prepare(result, importance, lr, seed_rule,
                                         weight_decay=weight_decay, init_scale=init_scale)
  colors = activation_colors(acts)
  fig = Figure(layout="constrained")

  def draw(ax, a, act):
    ax.set_xscale("log")
    plot_feature_dimensionality(ax, dens, red["feature_dimensionality"][a], color=colors[act],
                                diverged=red["diverged"][a], seed=a)
    _feature_dim_references(ax)
    ax.set_ylim(-0.03, 1.08)
    ax.tick_params(labelsize=8)
    ax.set_xlabel("1/(1-S)", fontsize=9)
    ax.set_ylabel(r"$D_i$", fontsize=9)

  activation_panels(fig, acts, draw, panel=(3.2, 2.6), sharey=True)
  if np.any(red["diverged"]):
    diverged_legend(fig, diverged_marker())
  note = [r"$D_i = \|W_i\|^2 / \Sigma_j (\hat W_i\cdot W_j)^2$; 0 = feature not learned.",
          "Dotted lines: TMS's geometries 1, 3/4, 2/3, 1/2, 2/5, 3/8.", "Points jittered in x."]
  return finish(fig, "Per-feature dimensionality vs sparsity", caption(res, seed_rule, chosen),
                note)
