"""Training loss against step: one panel per activation, one colour per density."""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
from matplotlib import cm
from matplotlib import colors as mcolors
from matplotlib import lines as mlines
from matplotlib.figure import Figure

from superpos_jax import results
from superpos_jax.plotting.captions import caption, finish
from superpos_jax.plotting.panels import activation_panels, prepare
from superpos_jax.plotting.style import DIVERGED_EDGE


def plot_loss_curves(ax, steps: np.ndarray, histories: np.ndarray, density: np.ndarray,
                     norm: mcolors.Normalize, *, cmap: str = "viridis",
                     best: np.ndarray | None = None, diverged: np.ndarray | None = None) -> None:
  """Loss histories of one activation: thin line per seed, thick line per density.

  Args:
    ax: the Axes (log y).
    steps: x values `[T]` (`result.extra["history_steps"]`).
    histories: per-seed losses `[D, S, T]`.
    density: densities `[D]`, coloured through `norm` and `cmap`.
    norm: density -> [0, 1] for the colormap.
    cmap: colormap name.
    best: optional seed-reduced curves `[D, T]`, drawn thick.
    diverged: optional bool `[D, S]`: those runs are grey dashed, with a cross at their
      last finite point.
  """
  colormap = matplotlib.colormaps[cmap]
  for d in range(histories.shape[0]):
    color = colormap(norm(density[d]))
    for s in range(histories.shape[1]):
      h = histories[d, s]
      if diverged is not None and diverged[d, s]:
        ax.plot(steps, h, color=DIVERGED_EDGE, linestyle="--", linewidth=0.7)
        ok = np.flatnonzero(np.isfinite(h) & (h > 0))
        if ok.size:
          ax.plot(steps[ok[-1]], h[ok[-1]], "x", color=DIVERGED_EDGE)
      else:
        ax.plot(steps, h, color=color, linewidth=0.6, alpha=0.35)
    if best is not None:
      ax.plot(steps, best[d], color=color, linewidth=1.6)
  ax.set_yscale("log")


def _density_norm(dens: np.ndarray) -> mcolors.LogNorm:
  """Log colour scale over the densities, widened when there is only one."""
  lo, hi = float(np.min(dens)), float(np.max(dens))
  if lo == hi:
    lo, hi = lo / 2, hi * 2
  return mcolors.LogNorm(vmin=lo, vmax=hi)


def _curve_legend(fig: Figure, seed_rule: str, any_diverged: bool) -> None:
  handles = [mlines.Line2D([], [], color="0.3", linewidth=0.6, alpha=0.6, label="one seed"),
             mlines.Line2D([], [], color="0.3", linewidth=1.6,
                           label="best seed" if seed_rule == "best" else "trimmed mean")]
  if any_diverged:
    handles.append(mlines.Line2D([], [], color=DIVERGED_EDGE, linestyle="--", marker="x",
                                 label="diverged run"))
  fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)


def figure_loss_curves(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                       seed_rule: str = "best", weight_decay: Any = None,
                       init_scale: Any = None) -> Figure:
  """Training loss vs step, one panel per activation, one colour per density.

  Args:
    result: a sweep result with its `loss_history`.
    importance, lr, weight_decay, init_scale: which value of each axis to show
      (default: the first).
    seed_rule: which seed-reduced curve to draw thick ("best" or "trimmed_mean").

  Returns:
    The figure.
  """
  res, red, chosen, acts, dens = prepare(result, importance, lr, seed_rule,
                                         weight_decay=weight_decay, init_scale=init_scale)
  steps = np.asarray(result.extra["history_steps"])
  hist = res["loss_history"]
  div = res["diverged"]
  if "seed" not in res.coords:  # already reduced: one "seed"
    hist, div = hist[:, :, None], div[:, :, None]
  norm = _density_norm(dens)
  fig = Figure(layout="constrained")

  def draw(ax, a, act):
    # A point diverged in every seed has no healthy curve to draw thick.
    best = np.where(red["diverged"][a][:, None], np.nan, red["loss_history"][a])
    plot_loss_curves(ax, steps, hist[a], dens, norm, best=best, diverged=div[a])
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel("training loss", fontsize=9)
    ax.tick_params(labelsize=8)

  axes = activation_panels(fig, acts, draw, panel=(3.3, 2.6))
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes, shrink=0.6, aspect=30,
               label="density 1-S")
  _curve_legend(fig, seed_rule, bool(np.any(div)))
  return finish(fig, "Training loss (mean over each logging window)",
                [*caption(res, seed_rule, chosen),
                 "loss $\\Sigma_i I_i (x_i - x'_i)^2$, batch mean"])
