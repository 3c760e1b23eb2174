"""n=2, m=1 phase diagrams (Lad & Kostolansky 2023; Elhage et al. 2022 §4).

x = density 1-S, y = relative importance r of feature 2, both log, one panel per
activation; the ReLU panel carries the closed-form boundaries of
`theory.relu_closed_form_phase`. Named apart from `superpos_jax.phases`, which defines
the phases these figures colour.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import lines as mlines
from matplotlib import patches as mpatches
from matplotlib.figure import Figure

from superpos_jax import results
from superpos_jax.phases import AMBIGUOUS, BOTH, FEATURE1, FEATURE2, NEITHER, PHASES
from superpos_jax.plotting.captions import caption, finish
from superpos_jax.plotting.panels import activation_panels, prepare
from superpos_jax.plotting.style import diverged_patch, fmt, hatch_cells, log_edges
from superpos_jax.theory import relu_closed_form_phase

PHASE_COLORS = {
    NEITHER: "#d9d9d9",
    FEATURE1: "#4c72b0",
    BOTH: "#8e44ad",
    FEATURE2: "#dd8452",
    AMBIGUOUS: "#f5e6a8",
}


def _phase_axes(ax, dens: np.ndarray, imps: np.ndarray) -> None:
  ax.set_xscale("log")
  ax.set_yscale("log")
  # The study's canonical ranges, widened if the grid reaches beyond them.
  ax.set_xlim(min(0.01, dens.min()), max(1.0, dens.max()))
  ax.set_ylim(min(0.1, imps.min()), max(10.0, imps.max()))
  ax.set_xlabel("density 1-S", fontsize=9)
  ax.set_ylabel("relative importance r of feature 2", fontsize=9)
  ax.tick_params(labelsize=8)


def plot_phase(ax, density: np.ndarray, importance: np.ndarray, phase: np.ndarray,
               diverged: np.ndarray | None = None):
  """Draws discrete n=2 phases on log-spaced cells around the grid coordinates.

  Args:
    ax: the Axes.
    density: sorted density centres `[D]`.
    importance: sorted relative-importance centres `[I]`.
    phase: phase indices into `phases.PHASES`, `[I, D]`.
    diverged: optional bool `[I, D]`, drawn as grey hatched cells.

  Returns:
    The QuadMesh.
  """
  x_edges, y_edges = log_edges(density), log_edges(importance)
  k = len(PHASES)
  cmap = mcolors.ListedColormap([PHASE_COLORS[i] for i in range(k)])
  mesh = ax.pcolormesh(x_edges, y_edges, np.asarray(phase), cmap=cmap,
                       norm=mcolors.BoundaryNorm(np.arange(-0.5, k), k), shading="flat")
  if diverged is not None and np.any(diverged):
    hatch_cells(ax, x_edges, y_edges, np.asarray(diverged, bool))
  _phase_axes(ax, np.asarray(density), np.asarray(importance))
  return mesh


def plot_relu_boundaries(ax, resolution: int = 400) -> None:
  """Overlays the closed-form ReLU phase boundaries as black contours on a log-log Axes.

  Args:
    ax: a phase diagram's Axes (its limits set the drawn range).
    resolution: grid points per axis of the contoured closed form.
  """
  (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
  s = np.geomspace(x0, min(x1, 1.0), resolution)
  r = np.geomspace(y0, y1, resolution)
  phase = relu_closed_form_phase(s[None, :], r[:, None])
  ax.contour(s, r, phase, levels=[(FEATURE1 + BOTH) / 2, (BOTH + FEATURE2) / 2], colors="k",
             linewidths=1.4, zorder=4)
  ax.set_xlim(x0, x1)
  ax.set_ylim(y0, y1)


def phase_continuous_colors(feature_norms: np.ndarray, superposition: np.ndarray) -> np.ndarray:
  """Continuous n=2 phase colours: HSV from norms and superposition, as RGB.

  hue = mean over the two features of `min(‖W_i‖, 1) · superposition_i`, clipped to
  [0, 1], mapped from blue (0: no interference) through purple to red (1: full
  superposition, e.g. antipodal). Weighting by the feature's own norm matters at m=1:
  there every nonzero column is a unit vector, so a barely-learned feature (‖W_1‖ = 0.05)
  would otherwise count as fully superposed with the other one;
  saturation = clip(‖W_2‖, 0, 1); value = 0.45 + 0.55·clip(‖W_1‖, 0, 1). Corners:
  feature 1 only -> white, feature 2 only -> dark blue, superposition -> red,
  neither -> mid grey.

  Args:
    feature_norms: `‖W_i‖: [..., 2]`.
    superposition: `Σ_{j≠i}(Ŵ_i·W_j)²: [..., 2]`.

  Returns:
    RGB `[..., 3]` in [0, 1]; NaN inputs give mid grey.
  """
  norms = np.nan_to_num(np.asarray(feature_norms, np.float64))
  sup = np.nan_to_num(np.asarray(superposition, np.float64)) * np.clip(norms, 0, 1)
  sup = np.clip(sup.mean(-1), 0, 1)
  hue = np.mod(0.62 + 0.38 * sup, 1.0)
  sat = np.clip(norms[..., 1], 0, 1)
  val = 0.45 + 0.55 * np.clip(norms[..., 0], 0, 1)
  return mcolors.hsv_to_rgb(np.stack([hue, sat, val], axis=-1))


def plot_phase_continuous(ax, density: np.ndarray, importance: np.ndarray,
                          feature_norms: np.ndarray, superposition: np.ndarray,
                          diverged: np.ndarray | None = None) -> None:
  """Draws `phase_continuous_colors` on log-spaced cells around the grid coordinates.

  Args:
    ax: the Axes.
    density: sorted density centres `[D]`.
    importance: sorted relative-importance centres `[I]`.
    feature_norms: `[I, D, 2]`.
    superposition: `[I, D, 2]`.
    diverged: optional bool `[I, D]`, drawn as grey hatched cells.
  """
  x_edges, y_edges = log_edges(density), log_edges(importance)
  rgb = phase_continuous_colors(feature_norms, superposition)
  ax.pcolormesh(x_edges, y_edges, rgb, shading="flat")
  if diverged is not None and np.any(diverged):
    hatch_cells(ax, x_edges, y_edges, np.asarray(diverged, bool))
  _phase_axes(ax, np.asarray(density), np.asarray(importance))


# The figures.


def _phase_grid(red: results.SweepResult, key: str):
  """Sorted density/importance centres and `key`'s values as `[activation, I, D, ...]`."""
  dens, imps = red.coords["density"], red.coords["importance"]
  di, ii = np.argsort(dens), np.argsort(imps)
  values = red[key][:, di][:, :, ii]  # [A, D, I, ...]
  return dens[di], imps[ii], np.swapaxes(values, 1, 2)


def _prepare_phases(result: results.SweepResult, lr: Any, seed_rule: str, **settings: Any):
  """`panels.prepare` keeping the importance axis, for n=2 results only.

  Returns:
    (selected result with seeds, seed-reduced result, chosen coordinates, activation
    names, diverged `[A, I, D]`).
  """
  if "phase" not in result.data:
    raise ValueError("phase diagrams need an n=2 result (it has no 'phase' array); "
                     f"this one has n={result.spec.n}")
  res, red, chosen, acts, _ = prepare(result, None, lr, seed_rule, keep_importance=True, **settings)
  return res, red, chosen, acts, _phase_grid(red, "diverged")[2]


def _phase_panels(fig: Figure, acts: list[str], plot: Callable[[Any, int], None],
                  closed_form: bool, **kwargs) -> list:
  """One phase panel per activation, the ReLU one with the closed-form boundaries."""

  def draw(ax, a, act):
    plot(ax, a)
    if closed_form and act == "relu":
      plot_relu_boundaries(ax)

  return activation_panels(fig, acts, draw, panel=(3.0, 2.7), **kwargs)


def _legend(fig: Figure, handles: list, acts: list[str], closed_form: bool,
            diverged: np.ndarray, title: str) -> None:
  """The figure's legend: `handles`, then the closed-form line and diverged cells if drawn."""
  if closed_form and "relu" in acts:
    handles.append(mlines.Line2D([], [], color="k", linewidth=1.4,
                                 label="ReLU closed form\n(Wattenberg)"))
  if np.any(diverged):
    handles.append(diverged_patch())
  fig.legend(handles=handles, loc="outside right center", fontsize=8, title=title,
             title_fontsize=9)


def _phase_caption(res, seed_rule, chosen) -> list[str]:
  spec = res.spec
  return [*caption(res, seed_rule, chosen, importance_on_axis=True),
          f"encoded: $\\|W_i\\| > {fmt(spec.phase_encoded)}$, not encoded: "
          f"$\\|W_i\\| < {fmt(spec.phase_not_encoded)}$, otherwise ambiguous"]


def figure_phase_diagram(result: results.SweepResult, *, lr: Any = None, seed_rule: str = "best",
                         closed_form: bool = True, weight_decay: Any = None,
                         init_scale: Any = None) -> Figure:
  """n=2, m=1 phase diagrams, one panel per activation (Lad & Kostolansky, TMS §4).

  x = density 1-S (log, 0.01..1), y = relative importance r of feature 2 (log, 0.1..10);
  cells coloured by `data["phase"]`. The ReLU panel carries the closed-form boundaries of
  `relu_closed_form_phase` as black lines.

  Args:
    result: an n=2 sweep result whose importance axis is r (importance_kind "relative").
    lr, weight_decay, init_scale: which value of each axis to show (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean": majority phase).
    closed_form: overlay the ReLU closed form on the "relu" panel.

  Returns:
    The figure.
  """
  res, red, chosen, acts, diverged = _prepare_phases(
      result, lr, seed_rule, weight_decay=weight_decay, init_scale=init_scale)
  dens, imps, phase = _phase_grid(red, "phase")
  fig = Figure(layout="constrained")
  _phase_panels(fig, acts, lambda ax, a: plot_phase(ax, dens, imps, phase[a], diverged[a]),
                closed_form, sharey=True)
  handles = [mpatches.Patch(color=PHASE_COLORS[i], label=name) for i, name in enumerate(PHASES)]
  _legend(fig, handles, acts, closed_form, diverged, "phase")
  return finish(fig, "n=2, m=1 phase diagrams: which features are encoded",
                _phase_caption(res, seed_rule, chosen))


def _colour_key(key) -> list:
  """Draws the continuous colours at ‖W_1‖ = 1 on `key`; returns the corners' patches."""
  grid = np.linspace(0, 1, 101)
  w2, sp = np.meshgrid(grid, grid)
  key_norms = np.stack([np.ones_like(w2), w2], -1)
  key.imshow(phase_continuous_colors(key_norms, np.stack([sp, sp], -1)), origin="lower",
             extent=(0, 1, 0, 1), aspect="auto")
  key.set_xlabel(r"$\|W_2\|$ (saturation)", fontsize=9)
  key.set_ylabel(r"superposition of each feature (hue)", fontsize=9)
  key.set_title(r"colour key at $\|W_1\| = 1$;" "\n" r"smaller $\|W_1\|$ is darker", fontsize=9)
  key.tick_params(labelsize=8)
  corners = [("feature 1 only", [1, 0], 0), ("feature 2 only", [0, 1], 0),
             ("superposition", [1, 1], 1), ("neither", [0, 0], 0)]
  return [mpatches.Patch(color=phase_continuous_colors(np.array(nm), np.array([s, s])),
                         label=label, ec="0.5") for label, nm, s in corners]


def figure_phase_continuous(result: results.SweepResult, *, lr: Any = None,
                            seed_rule: str = "best", closed_form: bool = True,
                            weight_decay: Any = None, init_scale: Any = None) -> Figure:
  """n=2 phase diagrams in continuous colour (see `phase_continuous_colors`), plus a key.

  Args:
    result: an n=2 sweep result whose importance axis is r.
    lr, weight_decay, init_scale: which value of each axis to show (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").
    closed_form: overlay the ReLU closed form on the "relu" panel.

  Returns:
    The figure; its last panel is the colour key at ‖W_1‖ = 1.
  """
  res, red, chosen, acts, diverged = _prepare_phases(
      result, lr, seed_rule, weight_decay=weight_decay, init_scale=init_scale)
  dens, imps, norms = _phase_grid(red, "feature_norms")
  sup = _phase_grid(red, "superposition")[2]
  fig = Figure(layout="constrained")
  axes = _phase_panels(
      fig, acts,
      lambda ax, a: plot_phase_continuous(ax, dens, imps, norms[a], sup[a], diverged[a]),
      closed_form, extra=1)
  _legend(fig, _colour_key(axes[-1]), acts, closed_form, diverged, "ideal cases")
  return finish(fig, r"n=2 phase diagrams, continuous: hue = superposition, "
                r"saturation = $\|W_2\|$, value = $\|W_1\|$",
                _phase_caption(res, seed_rule, chosen))
