"""Where training lands, seed by seed: n=2 basin statistics next to the best-seed diagram.

"Best seed" answers "what is the optimum training found"; the fraction of seeds in a
phase answers "what does training usually find" (SCIENCE.md, basin statistics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import patches as mpatches
from matplotlib.figure import Figure

from superpos_jax import results, summary
from superpos_jax.phases import BOTH, PHASES
from superpos_jax.plotting.captions import finish
from superpos_jax.plotting.phase_diagrams import (PHASE_COLORS, _phase_axes, _phase_caption,
                                                  _prepare_phases, plot_phase,
                                                  plot_relu_boundaries)
from superpos_jax.plotting.style import hatch_cells, log_edges

_COLUMNS = ("best seed", "fraction of seeds in superposition", "loss gap (median − best) / best")


def _sorted_grid(res: results.SweepResult, values: np.ndarray):
  """Density/importance centres in ascending order and `values [A, D, I, ...]` as `[A, I, D, ...]`."""
  dens, imps = res.coords["density"], res.coords["importance"]
  di, ii = np.argsort(dens), np.argsort(imps)
  return dens[di], imps[ii], np.swapaxes(values[:, di][:, :, ii], 1, 2)


def plot_fraction(ax, density: np.ndarray, importance: np.ndarray, values: np.ndarray, *,
                  cmap: str = "viridis", norm: Any = None, missing: Any = None):
  """A density × importance heat map of `values [I, D]` (NaN cells hatched grey)."""
  x_edges, y_edges = log_edges(density), log_edges(importance)
  mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(values), cmap=cmap,
                       norm=norm or mcolors.Normalize(0.0, 1.0), shading="flat")
  bad = ~np.isfinite(values) if missing is None else np.asarray(missing, bool)
  if bad.any():
    hatch_cells(ax, x_edges, y_edges, bad)
  _phase_axes(ax, np.asarray(density), np.asarray(importance))
  return mesh


def figure_phase_basins(result: results.SweepResult, *, lr: Any = None,
                        closed_form: bool = True) -> Figure:
  """Per activation (rows): the best-seed phase, the fraction of seeds that land in
  superposition, and the loss gap between the best and the median seed.

  Args:
    result: an n=2 sweep result with several seeds, importance axis r.
    lr: which learning rate to show (default: the first).
    closed_form: overlay the ReLU closed form on the ReLU panels.

  Returns:
    The figure.
  """
  res, red, chosen, acts, diverged = _prepare_phases(result, lr, "best")
  basins = summary.basin_statistics(res)  # [A, D, I, ...] (lr selected)
  dens, imps, phase = _sorted_grid(red, red["phase"])
  p_sup = _sorted_grid(red, basins.phase_fraction[..., BOTH])[2]
  gap = _sorted_grid(red, basins.loss_gap)[2]
  gap_norm = mcolors.LogNorm(1e-3, 1.0)
  fig = Figure(layout="constrained", figsize=(10.5, 2.6 * len(acts) + 1.2))
  axes = fig.subplots(len(acts), 3, squeeze=False, sharex=True, sharey=True)
  meshes = []
  for a, act in enumerate(acts):
    plot_phase(axes[a, 0], dens, imps, phase[a], diverged[a])
    meshes = [plot_fraction(axes[a, 1], dens, imps, p_sup[a]),
              plot_fraction(axes[a, 2], dens, imps, np.clip(gap[a], 1e-3, None),
                            cmap="magma", norm=gap_norm, missing=~np.isfinite(gap[a]))]
    for ax in axes[a]:
      if closed_form and act == "relu":
        plot_relu_boundaries(ax)
    axes[a, 0].set_ylabel(f"{act}\nrelative importance r", fontsize=9)
    for ax in axes[a, 1:]:
      ax.set_ylabel("")
  for c, title in enumerate(_COLUMNS):
    axes[0, c].set_title(title, fontsize=10)
  for ax in axes.ravel()[:-3]:
    ax.set_xlabel("")
  fig.colorbar(meshes[0], ax=axes[:, 1], shrink=0.5, label="fraction of seeds")
  fig.colorbar(meshes[1], ax=axes[:, 2], shrink=0.5, label="relative loss gap (clipped at 1e-3)")
  handles = [mpatches.Patch(color=PHASE_COLORS[i], label=name) for i, name in enumerate(PHASES)]
  fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
  seeds = len(result.coords["seed"])
  return finish(fig, f"n=2, m=1: where {seeds} seeds land (best seed vs typical seed)",
                _phase_caption(res, "best", chosen))
