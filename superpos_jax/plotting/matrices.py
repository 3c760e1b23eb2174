"""What each model's weights look like: Gram matrices, feature norms, features per neuron.

Each figure is an activation × density grid of panels, one seed-reduced model per panel
(`panels.activation_density_panels`), in the style of TMS's Fig. 2 and feature-norm bars.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib
import numpy as np
from matplotlib import cm
from matplotlib import colors as mcolors
from matplotlib import patches as mpatches
from matplotlib import ticker
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from superpos_jax import results
from superpos_jax.plotting.captions import caption, finish
from superpos_jax.plotting.panels import activation_density_panels, prepare
from superpos_jax.plotting.style import (diverged_legend, diverged_patch, feature_colors,
                                         feature_ticks)

# 1. Gram matrices.


def plot_gram(ax, W: np.ndarray, *, cmap: str = "coolwarm", vmin: float = -1.0,
              vmax: float = 1.0):
  """Draws `WᵀW` of one model as a heatmap (feature 0 top-left).

  Args:
    ax: the Axes.
    W: weights `[m, n]`.
    cmap, vmin, vmax: colour scale (diverging, symmetric about 0).

  Returns:
    The image (for a colorbar).
  """
  W = np.asarray(W, np.float64)
  im = ax.imshow(W.T @ W, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                 aspect="auto")
  ax.set_xticks([])
  ax.set_yticks([])
  return im


def plot_bias(ax, b: np.ndarray, *, cmap: str = "coolwarm", vmin: float = -1.0,
              vmax: float = 1.0):
  """Draws the bias `b: [n]` as an `n × 1` strip aligned with the Gram matrix rows.

  Args:
    ax: the Axes.
    b: bias `[n]`.
    cmap, vmin, vmax: colour scale (that of `plot_gram`, so one colorbar serves both).

  Returns:
    The image.
  """
  im = ax.imshow(np.asarray(b, np.float64)[:, None], cmap=cmap, vmin=vmin, vmax=vmax,
                 interpolation="nearest", aspect="auto")
  ax.set_xticks([])
  ax.set_yticks([])
  return im


def _weights_note(seed_rule: str) -> list[str]:
  """The caption phrase of a figure of weights asked for a rule that averages metrics."""
  if seed_rule == "best":
    return []
  return [f"weights: best seed ({seed_rule} averages metrics, never weights)"]


def _colorbar(fig: Figure, mappable, axes, rows: int, *label: str) -> None:
  """One colorbar beside `axes`, its label's parts on one line; a figure of one or two
  rows is too short for that at half its height, so there the bar is taller and each
  part gets a line of its own."""
  short = rows <= 2
  fig.colorbar(mappable, ax=axes, shrink=0.9 if short else 0.5, aspect=15 if short else 30,
               label=("\n" if short else " ").join(label))


def figure_gram(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                seed_rule: str = "best", weight_decay: Any = None,
                init_scale: Any = None) -> Figure:
  """`WᵀW` heatmaps and biases: rows = activations, columns = densities (TMS Fig. 2 style).

  Args:
    result: a sweep result; each panel shows one model's `W` and `b`.
    importance, lr, weight_decay, init_scale: which value of each axis to show
      (default: the first).
    seed_rule: how to collapse seeds; weights are never averaged, so "trimmed_mean"
      shows the best seed too and the caption says so.

  Returns:
    The figure; one colorbar serves the Gram matrices and the bias strips.
  """
  res, red, chosen, acts, dens = prepare(result, importance, lr, "best",
                                         weight_decay=weight_decay, init_scale=init_scale)
  A, D = len(acts), len(dens)
  fig = Figure(figsize=(1.75 * D + 1.6, 1.5 * A + 1.4), layout="constrained")
  # One flat grid (Gram, bias strip, spacer) per density: constrained layout cannot place
  # a colorbar shared by axes of nested gridspecs.
  gridspec = fig.add_gridspec(A, 3 * D, width_ratios=[1.0, 0.1, 0.12] * D, wspace=0.0)
  grid = [[(fig.add_subplot(gridspec[a, 3 * d]), fig.add_subplot(gridspec[a, 3 * d + 1]))
           for d in range(D)] for a in range(A)]
  images = []

  def draw(panel, a, d):
    images.append(plot_gram(panel[0], red["W"][a, d]))
    plot_bias(panel[1], red["b"][a, d])

  def style(panel, a, d):
    for ax in panel:  # diverged panels too, whose empty axes would tick 0..1
      ax.set_xticks([])
      ax.set_yticks([])
    if a == 0:
      panel[1].set_title("b", fontsize=9)

  any_bad = activation_density_panels(grid, red, draw, style=style,
                                      label_style=dict(fontsize=10, fontweight="bold"))
  im = images[-1] if images else cm.ScalarMappable(norm=mcolors.Normalize(-1, 1),
                                                   cmap="coolwarm")
  _colorbar(fig, im, [ax for row in grid for panel in row for ax in panel], A,
            r"$W^\top W$ entry (left) /", r"bias $b_i$ (strip),", "clipped to [-1, 1]")
  if any_bad:
    diverged_legend(fig, diverged_patch())
  return finish(fig, r"Feature Gram matrices $W^\top W$ and biases $b$ by activation and density",
                [*caption(res, "best", chosen), *_weights_note(seed_rule),
                 "feature 0 (most important) top-left"])


# 2. Feature norms.


def plot_feature_norms(ax, norms: np.ndarray, superposition: np.ndarray, *,
                       cmap: str = "viridis") -> None:
  """Horizontal bars of `‖W_i‖` (feature 0 on top), coloured by superposition.

  Args:
    ax: the Axes.
    norms: `‖W_i‖: [n]`.
    superposition: `Σ_{j≠i} (Ŵ_i·W_j)²: [n]`, coloured on [0, 1] (clipped).
    cmap: colormap of the superposition.
  """
  n = len(norms)
  colors = matplotlib.colormaps[cmap](np.clip(np.nan_to_num(superposition), 0, 1))
  ax.barh(np.arange(n), np.nan_to_num(norms), color=colors, height=0.8 if n <= 40 else 1.0,
          linewidth=0)
  ax.set_ylim(n - 0.5, -0.5)
  feature_ticks(ax, n)


def figure_feature_norms(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                         seed_rule: str = "best", weight_decay: Any = None,
                         init_scale: Any = None) -> Figure:
  """Bars of `‖W_i‖` per feature coloured by superposition, activations × densities (TMS).

  Args:
    result: a sweep result; each panel shows one model's `feature_norms`.
    importance, lr, weight_decay, init_scale: which value of each axis to show
      (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").

  Returns:
    The figure; bar lengths share an x scale within each row.
  """
  res, red, chosen, acts, dens = prepare(result, importance, lr, seed_rule,
                                         weight_decay=weight_decay, init_scale=init_scale)
  A, D = len(acts), len(dens)
  n = red["feature_norms"].shape[-1]
  fig = Figure(figsize=(1.9 * D + 2.0, max(1.3, 0.12 * min(n, 20)) * A + 1.6),
               layout="constrained")
  axes = fig.subplots(A, D, squeeze=False, sharey=True)
  # One scale per activation: sigmoid/SoLU norms grow well past 1 and would flatten
  # every other row if the scale were shared by all.
  row_max = [np.nanmax(np.where(red["diverged"][a][:, None], np.nan, red["feature_norms"][a]),
                       initial=0.0) for a in range(A)]

  def draw(ax, a, d):
    plot_feature_norms(ax, red["feature_norms"][a, d], red["superposition"][a, d])

  def style(ax, a, d):
    feature_ticks(ax, n)  # a row of diverged panels has no bars to set them
    ax.set_xlim(0, max(row_max[a] * 1.05, 1.05))
    ax.tick_params(labelsize=7)

  any_bad = activation_density_panels(axes, red, draw, row_label="{}\nfeature i",
                                      xlabel=r"$\|W_i\|$", style=style)
  sm = cm.ScalarMappable(norm=mcolors.Normalize(0, 1), cmap="viridis")
  _colorbar(fig, sm, axes, A, r"superposition $\Sigma_{j\neq i}(\hat W_i\cdot W_j)^2$",
            "(clipped to 1)")
  if any_bad:
    diverged_legend(fig, diverged_patch())
  return finish(fig, r"Feature norms $\|W_i\|$, coloured by superposition",
                [*caption(res, seed_rule, chosen), "x scale shared within a row"])


# 3. Features per hidden neuron.


def plot_neuron_features(ax, W: np.ndarray, colors: Sequence[Any]) -> None:
  """Stacked bars of each feature's weight `W[k, i]` on every hidden neuron k.

  Positive weights stack upward from 0 and negative ones downward, in feature order, so
  a bar made of several colours is a polysemantic neuron.

  Args:
    ax: the Axes.
    W: weights `[m, n]`.
    colors: one colour per feature, `[n]`.
  """
  W = np.asarray(W, np.float64)
  m, n = W.shape
  pos, neg = np.clip(W, 0, None), np.clip(W, None, 0)
  below_pos = np.cumsum(pos, axis=1) - pos  # [m, n]: stack height under feature i
  below_neg = np.cumsum(neg, axis=1) - neg
  bottom = np.where(W >= 0, below_pos, below_neg)
  # One PolyCollection for all m·n segments: `ax.bar` makes a Patch per segment, which
  # takes minutes for a grid of n=200 panels.
  x = np.repeat(np.arange(m, dtype=np.float64), n)
  y0, y1 = bottom.ravel(), (bottom + W).ravel()
  verts = np.stack([np.stack([x - 0.4, y0], -1), np.stack([x - 0.4, y1], -1),
                    np.stack([x + 0.4, y1], -1), np.stack([x + 0.4, y0], -1)], axis=1)
  rgba = np.tile(np.asarray([mcolors.to_rgba(c) for c in colors]), (m, 1))
  keep = W.ravel() != 0
  ax.add_collection(PolyCollection(verts[keep], facecolors=rgba[keep], linewidths=0))
  ax.autoscale_view()
  ax.axhline(0, color="k", linewidth=0.6)
  ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=min(m, 10), integer=True))


def _stack_limit(W: np.ndarray) -> float:
  """Half-height of a row's symmetric y range: the tallest stack of `W: [D, m, n]`.

  Stacked heights, not single weights, set it.
  """
  if not W.size:
    return 1.0
  up = np.nanmax(np.clip(W, 0, None).sum(-1), initial=0.0)
  down = np.nanmax(-np.clip(W, None, 0).sum(-1), initial=0.0)
  return max(up, down, 0.1) * 1.08


def _feature_key(fig: Figure, axes, colors: Sequence[Any], ranked: bool, any_bad: bool) -> None:
  """Names each feature's colour: a legend up to 20 features, a colorbar beyond."""
  n = len(colors)
  handles = [diverged_patch()] if any_bad else []
  if n <= 20:
    handles = [mpatches.Patch(color=colors[i], label=f"feature {i}") for i in range(n)] + handles
    fig.legend(handles=handles, loc="outside right center", fontsize=8,
               title="feature i\n(0 = most\nimportant)" if ranked else "feature i",
               title_fontsize=8)
    return
  sm = cm.ScalarMappable(norm=mcolors.Normalize(0, n - 1), cmap="viridis")
  fig.colorbar(sm, ax=axes, shrink=0.5, aspect=30, label="feature index i")
  if any_bad:
    diverged_legend(fig, diverged_patch())


def figure_neuron_features(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                           seed_rule: str = "best", weight_decay: Any = None,
                           init_scale: Any = None) -> Figure:
  """Per hidden neuron, stacked bars of the features it carries: activations × densities.

  Args:
    result: a sweep result; every panel stacks the columns of one model's weights W.
    importance, lr, weight_decay, init_scale: which value of each axis to show
      (default: the first).
    seed_rule: how to collapse seeds; weights are never averaged, so "trimmed_mean"
      shows the best seed's too, and the caption says so.

  Returns:
    The figure; features keep one colour across panels.
  """
  res, red, chosen, acts, dens = prepare(result, importance, lr, "best",
                                         weight_decay=weight_decay, init_scale=init_scale)
  A, D = len(acts), len(dens)
  m, n = red["W"].shape[-2:]
  colors = feature_colors(n)
  fig = Figure(figsize=(max(1.9, 0.22 * m) * D + 2.2, 1.55 * A + 1.6), layout="constrained")
  axes = fig.subplots(A, D, squeeze=False, sharex=True)
  lims = [_stack_limit(red["W"][a][~red["diverged"][a]]) for a in range(A)]

  def draw(ax, a, d):
    plot_neuron_features(ax, red["W"][a, d], colors)

  def style(ax, a, d):
    ax.set_ylim(-lims[a], lims[a])
    ax.set_xlim(-0.6, m - 0.4)
    ax.tick_params(labelsize=7)

  any_bad = activation_density_panels(axes, red, draw, row_label="{}\n$W_{{k,i}}$ (stacked)",
                                      xlabel="hidden neuron k", style=style)
  _feature_key(fig, axes, colors, result.spec.importance_kind == "geometric", any_bad)
  return finish(fig, "Features carried by each hidden neuron (positive up, negative down)",
                [*caption(res, "best", chosen), *_weights_note(seed_rule)])
