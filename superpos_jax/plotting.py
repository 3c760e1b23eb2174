"""Figures of sweep results (Elhage et al. 2022; Lad & Kostolansky 2023).

numpy + matplotlib only: this module reads `results.SweepResult`s and never imports jax,
so figures can be redrawn from saved `.npz` files on any machine. It builds
`matplotlib.figure.Figure` objects directly (no pyplot), which need no GUI backend.

Naming: `plot_*(ax, ...)` draws on one Axes; `figure_*(result, ...) -> Figure` makes a
whole, self-explaining figure (title, settings line, axis labels, legend or colorbar).
Every `figure_*` that takes a `SweepResult` collapses the seed axis with `seed_rule`
("best" or "trimmed_mean", see `SweepResult.reduce_seeds`) and, where the result has
several importances or learning rates, draws the one chosen by `importance=` / `lr=`
(default: the first coordinate value). Activation names and their order come from
`result.coords["activation"]`. Diverged models (NaN/inf weights or loss) are drawn as
grey hatched cells or grey crosses, never as numbers.

    res = results.load("n10.npz")
    save_figure(figure_gram(res), "figures/n10_gram")
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib import cm
from matplotlib.collections import PolyCollection
from matplotlib import colors as mcolors
from matplotlib import lines as mlines
from matplotlib import patches as mpatches
from matplotlib import ticker
from matplotlib import transforms
from matplotlib.figure import Figure

from superpos_jax import results

# Phase indices, looked up by name so a reordering of results.PHASES cannot silently
# recolour the diagrams.
NEITHER = results.PHASES.index("neither")
FEATURE1 = results.PHASES.index("feature 1 only")
BOTH = results.PHASES.index("superposition")
FEATURE2 = results.PHASES.index("feature 2 only")
AMBIGUOUS = results.PHASES.index("ambiguous")

PHASE_COLORS = {
    NEITHER: "#d9d9d9",
    FEATURE1: "#4c72b0",
    BOTH: "#8e44ad",
    FEATURE2: "#dd8452",
    AMBIGUOUS: "#f5e6a8",
}

# TMS's reference values of the per-feature dimensionality D_i (Elhage et al. §6):
# tegum-product geometries (digon 1/2, triangle 2/3, tetrahedron 3/4, pentagon 2/5, ...).
FEATURE_DIM_REFERENCES = ((1.0, "1"), (3 / 4, "3/4"), (2 / 3, "2/3"), (1 / 2, "1/2"),
                          (2 / 5, "2/5"), (3 / 8, "3/8"))

# Preferred colours for the study's activations, so an activation keeps its colour in
# every figure and in results holding any subset of activations; names without a
# preference (a user's registered activation) take the unused colours in order.
_PREFERRED_COLORS = {
    "linear": "#555555",
    "relu": "#1f77b4",
    "gelu": "#ff7f0e",
    "silu": "#2ca02c",
    "sigmoid": "#d62728",
    "tanh": "#9467bd",
    "solu": "#8c564b",
    "gelu_tanh": "#e6a532",
    "sigmoid_stretched": "#e377c2",
}
_SPARE_COLORS = ("#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a", "#ff9896",
                 "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")

_DIVERGED_FACE = "0.82"
_DIVERGED_EDGE = "0.35"


def activation_colors(names: Sequence[str]) -> dict[str, str]:
  """One colour per activation name, the same for a name in every figure.

  Args:
    names: activation names, e.g. `result.coords["activation"]`.

  Returns:
    name -> matplotlib colour.
  """
  names = [str(n) for n in names]
  taken = {_PREFERRED_COLORS[n] for n in names if n in _PREFERRED_COLORS}
  spare = [c for c in (*_SPARE_COLORS, *_PREFERRED_COLORS.values()) if c not in taken]
  out = {}
  for name in names:
    if name in _PREFERRED_COLORS:
      out[name] = _PREFERRED_COLORS[name]
    else:
      out[name] = spare.pop(0) if spare else "#000000"
  return out


def save_figure(fig: Figure, path: str | os.PathLike, formats: Sequence[str] = ("png",),
                dpi: int = 150) -> list[str]:
  """Writes `fig` as `path.<format>` for each format, atomically.

  Each file is written under a temporary name in the same folder and then renamed, so
  an interrupted run never leaves a truncated figure under the final name.

  Args:
    fig: the figure.
    path: destination without extension (an extension matching a format is dropped).
    formats: matplotlib format names, e.g. ("png", "pdf").
    dpi: resolution of raster formats.

  Returns:
    The paths written, one per format.
  """
  base = os.fspath(path)
  root, ext = os.path.splitext(base)
  if ext.lstrip(".").lower() in {f.lower() for f in formats}:
    base = root
  return [results.write_atomically(f"{base}.{fmt}",
                                   lambda f, fmt=fmt: fig.savefig(f, format=fmt, dpi=dpi))
          for fmt in formats]


# Helpers.


def _fmt(x: float) -> str:
  return f"{float(x):.3g}"


def _select(result: results.SweepResult, importance: Any = None, lr: Any = None, *,
            keep_importance: bool = False) -> tuple[results.SweepResult, dict[str, float]]:
  """Fixes one importance and one lr (default: the first), keeping the seed axis.

  `keep_importance` leaves the importance axis alone (the phase diagram's y axis).
  """
  chosen = {}
  for axis, value in (("importance", importance), ("lr", lr)):
    if axis in result.coords and not (axis == "importance" and keep_importance):
      chosen[axis] = float(result.coords[axis][0]) if value is None else value
  return result.sel(**chosen), chosen


def _prepare(result: results.SweepResult, importance: Any, lr: Any, seed_rule: str):
  """What the activation x density figures start from.

  Returns:
    (selected result with seeds, seed-reduced result, chosen coordinates, activation
    names, densities).
  """
  res, chosen = _select(result, importance, lr)
  red = _reduce(res, seed_rule)
  return res, red, chosen, _activations(red), red.coords["density"]


def _reduce(result: results.SweepResult, seed_rule: str) -> results.SweepResult:
  return result.reduce_seeds(seed_rule) if "seed" in result.coords else result


def _seed_text(result: results.SweepResult, seed_rule: str) -> str:
  count = len(result.coords["seed"]) if "seed" in result.coords else 1
  if count == 1:
    return "1 seed"
  if seed_rule == "best":
    return f"best of {count} seeds (lowest eval loss)"
  return f"metrics: mean of {count} seeds minus the worst; weights: best seed"


def _importance_text(spec: Mapping[str, Any], r: float | None) -> str:
  kind = spec.get("importance_kind", "?")
  if kind == "uniform":
    return "importance $I_i = 1$"
  if r is None:
    many = ", \\ldots" if spec.get("n", 2) > 2 else ""
    return {"relative": f"importance $I = [1, r{many}]$", "geometric": "importance $I_i = r^i$"
            }.get(kind, f"importance ({kind})")
  if kind == "geometric":
    return f"importance $I_i = {_fmt(r)}^i$"
  if kind == "relative":
    return f"importance $I = [1, {_fmt(r)}{', ' + chr(8230) if spec.get('n', 2) > 2 else ''}]$"
  return f"importance {_fmt(r)} ({kind})"


def _caption(result: results.SweepResult, seed_rule: str, chosen: Mapping[str, float],
             importance_on_axis: bool = False) -> list[str]:
  """The settings a reader needs (n, m, steps, lr, importance, seed rule), as phrases.

  `result` must still have its seed axis, so the seed count can be stated.
  """
  spec = result.spec
  parts = [f"n={spec.get('n', '?')}, m={spec.get('m', '?')}",
           f"{spec.get('steps', '?'):,} steps × batch {spec.get('batch_size', '?')}"]
  lr = chosen.get("lr", spec.get("lrs", [None])[0] if len(spec.get("lrs", [])) == 1 else None)
  if lr is not None:
    parts.append(f"AdamW lr={_fmt(lr)}, wd={_fmt(spec.get('weight_decay', float('nan')))}")
  if importance_on_axis:
    parts.append(_importance_text(spec, None) + " (r on the y axis)")
  else:
    parts.append(_importance_text(spec, chosen.get("importance")))
  parts.append(_seed_text(result, seed_rule))
  return parts


def _visible_len(text: str) -> int:
  """Rough rendered length of `text`: mathtext commands and `$` count as nothing."""
  return len(re.sub(r"\\[a-zA-Z]+|[${}^_]", "", text))


def _wrap(parts: Sequence[str], width: int) -> str:
  """Joins phrases with ' · ', breaking lines between phrases at about `width` chars."""
  lines, line = [], ""
  for part in parts:
    candidate = f"{line}  ·  {part}" if line else part
    if line and _visible_len(candidate) > width:
      lines.append(line)
      line = part
    else:
      line = candidate
  return "\n".join(lines + [line])


def _finish(fig: Figure, title: str, caption: Sequence[str] | str,
            note: Sequence[str] | str | None = None) -> Figure:
  """Adds the title, the wrapped settings line(s) below it, and an optional footnote."""
  # About 12 characters per inch at 10 pt: long captions would widen the suptitle past
  # the figure and make constrained layout collapse the axes.
  width = max(40, int(fig.get_figwidth() * 12))
  caption = [caption] if isinstance(caption, str) else caption
  fig.suptitle(f"{title}\n{_wrap(caption, width)}", fontsize=10)
  if note:
    note = [note] if isinstance(note, str) else note
    fig.supxlabel(_wrap(note, int(width * 1.2)), fontsize=8, style="italic", color="0.3")
  return fig


def _diverged_patch() -> mpatches.Patch:
  return mpatches.Patch(facecolor=_DIVERGED_FACE, edgecolor=_DIVERGED_EDGE, hatch="///",
                        label="diverged (NaN/inf)")


def _diverged_marker() -> mlines.Line2D:
  return mlines.Line2D([], [], color=_DIVERGED_EDGE, marker="x", linestyle="none",
                       label="diverged (NaN/inf)")


def _mark_diverged(ax, label: bool = True) -> None:
  """Covers a whole panel with the grey hatched 'diverged' pattern."""
  ax.add_patch(mpatches.Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor=_DIVERGED_FACE,
                                  edgecolor=_DIVERGED_EDGE, hatch="///", linewidth=0, zorder=5))
  if label:
    ax.text(0.5, 0.5, "diverged", transform=ax.transAxes, ha="center", va="center", fontsize=8,
            zorder=6, bbox=dict(facecolor="white", edgecolor="none", pad=1))


def _bad(W: np.ndarray, diverged: Any) -> bool:
  return bool(np.any(diverged)) or not np.all(np.isfinite(W))


def _activations(result: results.SweepResult) -> list[str]:
  return [str(a) for a in result.coords["activation"]]


def _panel_grid(fig: Figure, count: int, max_cols: int = 4, panel: tuple[float, float] = (3.2, 2.6),
                **kwargs) -> list:
  """`count` axes in a grid of at most `max_cols` columns; sets the figure size."""
  ncols = min(count, max_cols)
  nrows = -(-count // ncols)
  fig.set_size_inches(panel[0] * ncols + 1.5, panel[1] * nrows + 1.2)
  axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs).ravel()
  for ax in axes[count:]:
    ax.remove()
  return list(axes[:count])


def _outer_labels(axes: Sequence, max_cols: int = 4) -> None:
  """Keeps y labels on the first column and x labels on each column's lowest panel.

  Used instead of `sharex`, which would also hide the x tick labels of a panel that has
  no panel below it in an incomplete last row.
  """
  ncols = min(len(axes), max_cols)
  for i, ax in enumerate(axes):
    if i % ncols:
      ax.set_ylabel("")
    if i + ncols < len(axes):
      ax.set_xlabel("")


def _log_edges(centres: np.ndarray) -> np.ndarray:
  """Cell edges for sorted positive centres, midway between neighbours in log space."""
  logc = np.log(np.asarray(centres, np.float64))
  if logc.size == 1:
    half = np.log(10.0) / 4
    return np.exp(np.array([logc[0] - half, logc[0] + half]))
  mid = (logc[1:] + logc[:-1]) / 2
  return np.exp(np.concatenate([[2 * logc[0] - mid[0]], mid, [2 * logc[-1] - mid[-1]]]))


def _feature_colors(n: int) -> list:
  if n <= 10:
    return [cm.tab10(i) for i in range(n)]
  if n <= 20:
    return [cm.tab20(i) for i in range(n)]
  return [cm.viridis(i / (n - 1)) for i in range(n)]


def _feature_ticks(ax, n: int, axis: str = "y") -> None:
  loc = (ticker.FixedLocator(range(n)) if n <= 12
         else ticker.MaxNLocator(nbins=5, integer=True))
  (ax.yaxis if axis == "y" else ax.xaxis).set_major_locator(loc)


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
  """Draws the bias `b: [n]` as an `n × 1` strip aligned with the Gram matrix rows."""
  im = ax.imshow(np.asarray(b, np.float64)[:, None], cmap=cmap, vmin=vmin, vmax=vmax,
                 interpolation="nearest", aspect="auto")
  ax.set_xticks([])
  ax.set_yticks([])
  return im


def figure_gram(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                seed_rule: str = "best") -> Figure:
  """`WᵀW` heatmaps and biases: rows = activations, columns = densities (TMS Fig. 2 style).

  Args:
    result: a sweep result.
    importance, lr: which importance / learning rate to show (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").

  Returns:
    The figure.
  """
  res, red, chosen, acts, dens = _prepare(result, importance, lr, seed_rule)
  A, D = len(acts), len(dens)
  fig = Figure(figsize=(1.75 * D + 1.6, 1.5 * A + 1.4), layout="constrained")
  # One flat grid (Gram, bias strip, spacer) per density: constrained layout cannot place
  # a colorbar shared by axes of nested gridspecs.
  grid = fig.add_gridspec(A, 3 * D, width_ratios=[1.0, 0.1, 0.12] * D, wspace=0.0)
  axes, im, any_bad = [], None, False
  for a, act in enumerate(acts):
    for d in range(D):
      ax_g, ax_b = fig.add_subplot(grid[a, 3 * d]), fig.add_subplot(grid[a, 3 * d + 1])
      axes += [ax_g, ax_b]
      W, b = red["W"][a, d], red["b"][a, d]
      if _bad(W, red["diverged"][a, d]):
        any_bad = True
        for ax in (ax_g, ax_b):
          ax.set_xticks([])
          ax.set_yticks([])
        _mark_diverged(ax_g)
        _mark_diverged(ax_b, label=False)
      else:
        im = plot_gram(ax_g, W)
        plot_bias(ax_b, b)
      if a == 0:
        ax_g.set_title(f"1-S = {_fmt(dens[d])}", fontsize=10)
        ax_b.set_title("b", fontsize=9)
      if d == 0:
        ax_g.set_ylabel(act, fontsize=10, fontweight="bold")
  if im is None:
    im = cm.ScalarMappable(norm=mcolors.Normalize(-1, 1), cmap="coolwarm")
  fig.colorbar(im, ax=axes, shrink=0.5, aspect=30,
               label=r"$W^\top W$ entry (left) / bias $b_i$ (strip), clipped to [-1, 1]")
  if any_bad:
    fig.legend(handles=[_diverged_patch()], loc="outside lower right", fontsize=8)
  return _finish(fig, r"Feature Gram matrices $W^\top W$ and biases $b$ by activation and density",
                 [*_caption(res, seed_rule, chosen), "feature 0 (most important) top-left"])


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
  _feature_ticks(ax, n)


def figure_feature_norms(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                         seed_rule: str = "best") -> Figure:
  """Bars of `‖W_i‖` per feature coloured by superposition, activations × densities (TMS).

  Args:
    result: a sweep result.
    importance, lr: which importance / learning rate to show (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").

  Returns:
    The figure.
  """
  res, red, chosen, acts, dens = _prepare(result, importance, lr, seed_rule)
  A, D = len(acts), len(dens)
  n = red["W"].shape[-1]
  fig = Figure(figsize=(1.9 * D + 2.0, max(1.3, 0.12 * min(n, 20)) * A + 1.6),
               layout="constrained")
  axes = fig.subplots(A, D, squeeze=False, sharey=True)
  any_bad = False
  for a, act in enumerate(acts):
    row_max = np.nanmax(np.where(red["diverged"][a][:, None], np.nan, red["feature_norms"][a]),
                        initial=0.0)
    for d in range(D):
      ax = axes[a, d]
      if _bad(red["W"][a, d], red["diverged"][a, d]):
        any_bad = True
        _mark_diverged(ax)
        _feature_ticks(ax, n)
      else:
        plot_feature_norms(ax, red["feature_norms"][a, d], red["superposition"][a, d])
      # One scale per activation: sigmoid/SoLU norms grow well past 1 and would
      # flatten every other row if the scale were shared by all.
      ax.set_xlim(0, max(row_max * 1.05, 1.05))
      ax.tick_params(labelsize=7)
      if a == 0:
        ax.set_title(f"1-S = {_fmt(dens[d])}", fontsize=10)
      if d == 0:
        ax.set_ylabel(f"{act}\nfeature i", fontsize=9)
      if a == A - 1:
        ax.set_xlabel(r"$\|W_i\|$", fontsize=9)
  sm = cm.ScalarMappable(norm=mcolors.Normalize(0, 1), cmap="viridis")
  fig.colorbar(sm, ax=axes, shrink=0.5, aspect=30,
               label=r"superposition $\Sigma_{j\neq i}(\hat W_i\cdot W_j)^2$ (clipped to 1)")
  if any_bad:
    fig.legend(handles=[_diverged_patch()], loc="outside lower right", fontsize=8)
  return _finish(fig, r"Feature norms $\|W_i\|$, coloured by superposition",
                 [*_caption(res, seed_rule, chosen), "x scale shared within a row"])


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


def figure_neuron_features(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                           seed_rule: str = "best") -> Figure:
  """Per hidden neuron, stacked bars of the features it carries: activations × densities.

  Args:
    result: a sweep result.
    importance, lr: which importance / learning rate to show (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").

  Returns:
    The figure.
  """
  res, red, chosen, acts, dens = _prepare(result, importance, lr, seed_rule)
  A, D = len(acts), len(dens)
  m, n = red["W"].shape[-2:]
  colors = _feature_colors(n)
  fig = Figure(figsize=(max(1.9, 0.22 * m) * D + 2.2, 1.55 * A + 1.6), layout="constrained")
  axes = fig.subplots(A, D, squeeze=False, sharex=True)
  any_bad = False
  for a, act in enumerate(acts):
    finite = ~red["diverged"][a]
    Wa = red["W"][a][finite]
    # Symmetric shared y range per row: stacked heights, not single weights, set it.
    if Wa.size:
      up = np.nanmax(np.clip(Wa, 0, None).sum(-1), initial=0.0)
      down = np.nanmax(-np.clip(Wa, None, 0).sum(-1), initial=0.0)
      lim = max(up, down, 0.1) * 1.08
    else:
      lim = 1.0
    for d in range(D):
      ax = axes[a, d]
      if _bad(red["W"][a, d], red["diverged"][a, d]):
        any_bad = True
        _mark_diverged(ax)
      else:
        plot_neuron_features(ax, red["W"][a, d], colors)
      ax.set_ylim(-lim, lim)
      ax.set_xlim(-0.6, m - 0.4)
      ax.tick_params(labelsize=7)
      if a == 0:
        ax.set_title(f"1-S = {_fmt(dens[d])}", fontsize=10)
      if d == 0:
        ax.set_ylabel(f"{act}\n$W_{{k,i}}$ (stacked)", fontsize=9)
      if a == A - 1:
        ax.set_xlabel("hidden neuron k", fontsize=9)
  handles = [_diverged_patch()] if any_bad else []
  if n <= 20:
    handles = [mpatches.Patch(color=colors[i], label=f"feature {i}") for i in range(n)] + handles
    ranked = result.spec.get("importance_kind") == "geometric"
    fig.legend(handles=handles, loc="outside right center", fontsize=8,
               title="feature i\n(0 = most\nimportant)" if ranked else "feature i",
               title_fontsize=8)
  else:
    sm = cm.ScalarMappable(norm=mcolors.Normalize(0, n - 1), cmap="viridis")
    fig.colorbar(sm, ax=axes, shrink=0.5, aspect=30, label="feature index i")
    if handles:
      fig.legend(handles=handles, loc="outside lower right", fontsize=8)
  return _finish(fig, "Features carried by each hidden neuron (positive up, negative down)",
                 _caption(res, seed_rule, chosen))


# 4. n=2 phase diagrams.


def relu_closed_form_losses(density: Any, rel_importance: Any) -> np.ndarray:
  """Closed-form losses of the three n=2, m=1 ReLU candidate solutions.

  Feature i alone, with the optimal constant output c = E[x_i] = s/2 in place of a lost
  feature, costs `E[x²] - E[x]² = s/3 - s²/4` times its importance; the antipodal
  `W = [1, -1]`, b = 0 errs only when both features are present, by `min(x_1, x_2)`,
  costing `E[min²]·s² = s²/6` per feature (Wattenberg, "Exploring exact toy models").

  Args:
    density: feature density s = 1 - S, any shape.
    rel_importance: importance r of feature 2 (feature 1 has importance 1), broadcastable.

  Returns:
    `[..., 3]` losses of (keep feature 1 only, antipodal pair, keep feature 2 only).
  """
  s, r = np.broadcast_arrays(np.asarray(density, np.float64),
                             np.asarray(rel_importance, np.float64))
  one_feature = s / 3 - s**2 / 4
  return np.stack([r * one_feature, (1 + r) * s**2 / 6, one_feature], axis=-1)


def relu_closed_form_phase(density: Any, rel_importance: Any) -> np.ndarray:
  """Theoretical n=2, m=1 ReLU phase: the argmin of `relu_closed_form_losses`.

  Ties go to the earlier candidate (feature 1 only, then superposition): at r = 1 the two
  single-feature solutions tie exactly.

  Args:
    density: feature density s = 1 - S, any shape.
    rel_importance: importance r of feature 2, broadcastable against `density`.

  Returns:
    Integer phase indices into `results.PHASES` (FEATURE1, BOTH or FEATURE2), broadcast
    shape.
  """
  losses = relu_closed_form_losses(density, rel_importance)
  return np.array([FEATURE1, BOTH, FEATURE2])[np.argmin(losses, axis=-1)]


def _phase_grid(red: results.SweepResult, key: str):
  """Sorted density/importance centres and `key`'s values as `[activation, I, D, ...]`."""
  dens, imps = red.coords["density"], red.coords["importance"]
  di, ii = np.argsort(dens), np.argsort(imps)
  values = red[key][:, di][:, :, ii]  # [A, D, I, ...]
  return dens[di], imps[ii], np.swapaxes(values, 1, 2)


def _phase_axes(ax, dens: np.ndarray, imps: np.ndarray) -> None:
  ax.set_xscale("log")
  ax.set_yscale("log")
  # The study's canonical ranges, widened if the grid reaches beyond them.
  ax.set_xlim(min(0.01, dens.min()), max(1.0, dens.max()))
  ax.set_ylim(min(0.1, imps.min()), max(10.0, imps.max()))
  ax.set_xlabel("density 1-S", fontsize=9)
  ax.set_ylabel("relative importance r of feature 2", fontsize=9)
  ax.tick_params(labelsize=8)


def _hatch_cells(ax, x_edges, y_edges, mask) -> None:
  """Grey hatched rectangles over the cells `mask[y, x]` (diverged models)."""
  for yi, xi in zip(*np.nonzero(mask)):
    ax.add_patch(mpatches.Rectangle((x_edges[xi], y_edges[yi]), x_edges[xi + 1] - x_edges[xi],
                                    y_edges[yi + 1] - y_edges[yi], facecolor=_DIVERGED_FACE,
                                    edgecolor=_DIVERGED_EDGE, hatch="///", linewidth=0, zorder=3))


def plot_phase(ax, density: np.ndarray, importance: np.ndarray, phase: np.ndarray,
               diverged: np.ndarray | None = None):
  """Draws discrete n=2 phases on log-spaced cells around the grid coordinates.

  Args:
    ax: the Axes.
    density: sorted density centres `[D]`.
    importance: sorted relative-importance centres `[I]`.
    phase: phase indices into `results.PHASES`, `[I, D]`.
    diverged: optional bool `[I, D]`, drawn as grey hatched cells.

  Returns:
    The QuadMesh.
  """
  x_edges, y_edges = _log_edges(density), _log_edges(importance)
  k = len(results.PHASES)
  cmap = mcolors.ListedColormap([PHASE_COLORS[i] for i in range(k)])
  mesh = ax.pcolormesh(x_edges, y_edges, np.asarray(phase), cmap=cmap,
                       norm=mcolors.BoundaryNorm(np.arange(-0.5, k), k), shading="flat")
  if diverged is not None and np.any(diverged):
    _hatch_cells(ax, x_edges, y_edges, np.asarray(diverged, bool))
  _phase_axes(ax, np.asarray(density), np.asarray(importance))
  return mesh


def plot_relu_boundaries(ax, resolution: int = 400) -> None:
  """Overlays the closed-form ReLU phase boundaries as black contours on a log-log Axes."""
  (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
  s = np.geomspace(x0, min(x1, 1.0), resolution)
  r = np.geomspace(y0, y1, resolution)
  phase = relu_closed_form_phase(s[None, :], r[:, None])
  ax.contour(s, r, phase, levels=[(FEATURE1 + BOTH) / 2, (BOTH + FEATURE2) / 2], colors="k",
             linewidths=1.4, zorder=4)
  ax.set_xlim(x0, x1)
  ax.set_ylim(y0, y1)


def _check_phase_result(result: results.SweepResult) -> None:
  if "phase" not in result.data:
    raise ValueError("phase diagrams need an n=2 result (it has no 'phase' array); "
                     f"this one has n={result.spec.get('n')}")


def _phase_caption(res, seed_rule, chosen) -> list[str]:
  spec = res.spec
  return [*_caption(res, seed_rule, chosen, importance_on_axis=True),
          f"encoded: $\\|W_i\\| > {_fmt(spec.get('phase_encoded', 0.8))}$, not encoded: "
          f"$\\|W_i\\| < {_fmt(spec.get('phase_not_encoded', 0.2))}$, otherwise ambiguous"]


def figure_phase_diagram(result: results.SweepResult, *, lr: Any = None, seed_rule: str = "best",
                         closed_form: bool = True) -> Figure:
  """n=2, m=1 phase diagrams, one panel per activation (Lad & Kostolansky, TMS §4).

  x = density 1-S (log, 0.01..1), y = relative importance r of feature 2 (log, 0.1..10);
  cells coloured by `data["phase"]`. The ReLU panel carries the closed-form boundaries of
  `relu_closed_form_phase` as black lines.

  Args:
    result: an n=2 sweep result whose importance axis is r (importance_kind "relative").
    lr: which learning rate to show (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean": majority phase).
    closed_form: overlay the ReLU closed form on the "relu" panel.

  Returns:
    The figure.
  """
  _check_phase_result(result)
  res, chosen = _select(result, lr=lr, keep_importance=True)
  red = _reduce(res, seed_rule)
  acts = _activations(red)
  dens, imps, phase = _phase_grid(red, "phase")
  _, _, diverged = _phase_grid(red, "diverged")
  fig = Figure(layout="constrained")
  axes = _panel_grid(fig, len(acts), panel=(3.0, 2.7), sharey=True)
  for a, (ax, act) in enumerate(zip(axes, acts)):
    plot_phase(ax, dens, imps, phase[a], diverged[a])
    if closed_form and act == "relu":
      plot_relu_boundaries(ax)
    ax.set_title(act, fontsize=10, fontweight="bold")
  _outer_labels(axes)
  handles = [mpatches.Patch(color=PHASE_COLORS[i], label=name)
             for i, name in enumerate(results.PHASES)]
  if closed_form and "relu" in acts:
    handles.append(mlines.Line2D([], [], color="k", linewidth=1.4,
                                 label="ReLU closed form\n(Wattenberg)"))
  if np.any(diverged):
    handles.append(_diverged_patch())
  fig.legend(handles=handles, loc="outside right center", fontsize=8, title="phase",
             title_fontsize=9)
  return _finish(fig, "n=2, m=1 phase diagrams: which features are encoded",
                 _phase_caption(res, seed_rule, chosen))


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
  x_edges, y_edges = _log_edges(density), _log_edges(importance)
  rgb = phase_continuous_colors(feature_norms, superposition)
  ax.pcolormesh(x_edges, y_edges, rgb, shading="flat")
  if diverged is not None and np.any(diverged):
    _hatch_cells(ax, x_edges, y_edges, np.asarray(diverged, bool))
  _phase_axes(ax, np.asarray(density), np.asarray(importance))


def figure_phase_continuous(result: results.SweepResult, *, lr: Any = None,
                            seed_rule: str = "best", closed_form: bool = True) -> Figure:
  """n=2 phase diagrams in continuous colour (see `phase_continuous_colors`), plus a key.

  Args:
    result: an n=2 sweep result whose importance axis is r.
    lr: which learning rate to show (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").
    closed_form: overlay the ReLU closed form on the "relu" panel.

  Returns:
    The figure; its last panel is the colour key at ‖W_1‖ = 1.
  """
  _check_phase_result(result)
  res, chosen = _select(result, lr=lr, keep_importance=True)
  red = _reduce(res, seed_rule)
  acts = _activations(red)
  dens, imps, norms = _phase_grid(red, "feature_norms")
  _, _, sup = _phase_grid(red, "superposition")
  _, _, diverged = _phase_grid(red, "diverged")
  fig = Figure(layout="constrained")
  axes = _panel_grid(fig, len(acts) + 1, panel=(3.0, 2.7))
  for a, (ax, act) in enumerate(zip(axes, acts)):
    plot_phase_continuous(ax, dens, imps, norms[a], sup[a], diverged[a])
    if closed_form and act == "relu":
      plot_relu_boundaries(ax)
    ax.set_title(act, fontsize=10, fontweight="bold")
  key = axes[-1]
  grid = np.linspace(0, 1, 101)
  w2, sp = np.meshgrid(grid, grid)
  key_norms = np.stack([np.ones_like(w2), w2], -1)
  key.imshow(phase_continuous_colors(key_norms, np.stack([sp, sp], -1)), origin="lower",
             extent=(0, 1, 0, 1), aspect="auto")
  _outer_labels(axes)
  key.set_xlabel(r"$\|W_2\|$ (saturation)", fontsize=9)
  key.set_ylabel(r"superposition of each feature (hue)", fontsize=9)
  key.set_title(r"colour key at $\|W_1\| = 1$;" "\n" r"smaller $\|W_1\|$ is darker", fontsize=9)
  key.tick_params(labelsize=8)
  corners = [("feature 1 only", [1, 0], 0), ("feature 2 only", [0, 1], 0),
             ("superposition", [1, 1], 1), ("neither", [0, 0], 0)]
  handles = [mpatches.Patch(color=phase_continuous_colors(np.array(nm), np.array([s, s])),
                            label=label, ec="0.5") for label, nm, s in corners]
  if closed_form and "relu" in acts:
    handles.append(mlines.Line2D([], [], color="k", linewidth=1.4,
                                 label="ReLU closed form\n(Wattenberg)"))
  if np.any(diverged):
    handles.append(_diverged_patch())
  fig.legend(handles=handles, loc="outside right center", fontsize=8, title="ideal cases",
             title_fontsize=9)
  return _finish(fig, r"n=2 phase diagrams, continuous: hue = superposition, "
                 r"saturation = $\|W_2\|$, value = $\|W_1\|$",
                 _phase_caption(res, seed_rule, chosen))


# 5. Dimensions per feature (n=200).


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


def figure_dims_per_feature(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                            seed_rule: str = "best") -> Figure:
  """Dimensions per feature `D* = m / ‖W‖_F²` against `1/(1-S)` (Elhage et al. §6).

  Args:
    result: a sweep result (the study's n=200, m=20 uniform-importance sweep).
    importance, lr: which importance / learning rate to show (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").

  Returns:
    The figure.
  """
  res, red, chosen, acts, dens = _prepare(result, importance, lr, seed_rule)
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
  handles, _ = ax.get_legend_handles_labels()
  handles.append(mlines.Line2D([], [], color="0.4", linestyle="--", label="1 and 1/2 (TMS)"))
  if np.any(red["diverged"]):
    handles.append(mlines.Line2D([], [], color="0.3", marker="x", linestyle="none",
                                 markeredgewidth=1.6,
                                 label="diverged (NaN/inf),\nactivation's colour"))
  ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
            title="activation", title_fontsize=9)
  note = [r"$D^*$ assumes embedded features have $\|W_i\| \approx 1$;",
          r"sigmoid and SoLU grow $\|W\|_F^2$ past n, so for them $D^*$ is not "
          "'features per dimension'."]
  if len(res.coords.get("seed", [])) > 1:
    note.append("Faint dots: individual seeds.")
  return _finish(fig, "Dimensions per feature vs sparsity",
                 _caption(res, seed_rule, chosen), note)


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
            color=_DIVERGED_EDGE, zorder=5, clip_on=False)


def _feature_dim_references(ax) -> None:
  trans = transforms.blended_transform_factory(ax.transAxes, ax.transData)
  for y, label in FEATURE_DIM_REFERENCES:
    ax.axhline(y, color="0.55", linestyle=":", linewidth=0.8, zorder=0)
    # 2/5 and 3/8 are 0.025 apart: nudge their labels away from each other.
    va = "top" if label == "3/8" else ("bottom" if label == "2/5" else "center")
    ax.text(1.01, y, label, transform=trans, fontsize=7, va=va, ha="left", color="0.3")


def figure_feature_dimensionality(result: results.SweepResult, *, importance: Any = None,
                                  lr: Any = None, seed_rule: str = "best") -> Figure:
  """Per-feature dimensionality `D_i` per density, one panel per activation (TMS §6).

  Args:
    result: a sweep result (the study's n=200, m=20 sweep).
    importance, lr: which importance / learning rate to show (default: the first).
    seed_rule: how to collapse seeds ("best" or "trimmed_mean").

  Returns:
    The figure.
  """
  res, red, chosen, acts, dens = _prepare(result, importance, lr, seed_rule)
  colors = activation_colors(acts)
  fig = Figure(layout="constrained")
  axes = _panel_grid(fig, len(acts), panel=(3.2, 2.6), sharey=True)
  for a, (ax, act) in enumerate(zip(axes, acts)):
    ax.set_xscale("log")
    plot_feature_dimensionality(ax, dens, red["feature_dimensionality"][a], color=colors[act],
                                diverged=red["diverged"][a], seed=a)
    _feature_dim_references(ax)
    ax.set_ylim(-0.03, 1.08)
    ax.set_title(act, fontsize=10, fontweight="bold")
    ax.tick_params(labelsize=8)
    ax.set_xlabel("1/(1-S)", fontsize=9)
    ax.set_ylabel(r"$D_i$", fontsize=9)
  _outer_labels(axes)
  if np.any(red["diverged"]):
    fig.legend(handles=[_diverged_marker()], loc="outside lower right", fontsize=8)
  note = [r"$D_i = \|W_i\|^2 / \Sigma_j (\hat W_i\cdot W_j)^2$; 0 = feature not learned.",
          "Dotted lines: TMS's geometries 1, 3/4, 2/3, 1/2, 2/5, 3/8.", "Points jittered in x."]
  return _finish(fig, "Per-feature dimensionality vs sparsity",
                 _caption(res, seed_rule, chosen), note)


# 6. Loss curves.


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
        ax.plot(steps, h, color=_DIVERGED_EDGE, linestyle="--", linewidth=0.7)
        ok = np.flatnonzero(np.isfinite(h) & (h > 0))
        if ok.size:
          ax.plot(steps[ok[-1]], h[ok[-1]], "x", color=_DIVERGED_EDGE)
      else:
        ax.plot(steps, h, color=color, linewidth=0.6, alpha=0.35)
    if best is not None:
      ax.plot(steps, best[d], color=color, linewidth=1.6)
  ax.set_yscale("log")


def figure_loss_curves(result: results.SweepResult, *, importance: Any = None, lr: Any = None,
                       seed_rule: str = "best") -> Figure:
  """Training loss vs step, one panel per activation, one colour per density.

  Args:
    result: a sweep result.
    importance, lr: which importance / learning rate to show (default: the first).
    seed_rule: which seed-reduced curve to draw thick ("best" or "trimmed_mean").

  Returns:
    The figure.
  """
  res, red, chosen, acts, dens = _prepare(result, importance, lr, seed_rule)
  steps = np.asarray(result.extra["history_steps"])
  hist = res["loss_history"]
  div = res["diverged"]
  if "seed" not in res.coords:  # already reduced: one "seed"
    hist, div = hist[:, :, None], div[:, :, None]
  lo, hi = float(np.min(dens)), float(np.max(dens))
  if lo == hi:
    lo, hi = lo / 2, hi * 2
  norm = mcolors.LogNorm(vmin=lo, vmax=hi)
  fig = Figure(layout="constrained")
  axes = _panel_grid(fig, len(acts), panel=(3.3, 2.6))
  for a, (ax, act) in enumerate(zip(axes, acts)):
    # A point diverged in every seed has no healthy curve to draw thick.
    best = np.where(red["diverged"][a][:, None], np.nan, red["loss_history"][a])
    plot_loss_curves(ax, steps, hist[a], dens, norm, best=best, diverged=div[a])
    ax.set_title(act, fontsize=10, fontweight="bold")
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel("training loss", fontsize=9)
    ax.tick_params(labelsize=8)
  _outer_labels(axes)
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes, shrink=0.6, aspect=30,
               label="density 1-S")
  handles = [mlines.Line2D([], [], color="0.3", linewidth=0.6, alpha=0.6, label="one seed"),
             mlines.Line2D([], [], color="0.3", linewidth=1.6,
                           label="best seed" if seed_rule == "best" else "trimmed mean")]
  if np.any(div):
    handles.append(mlines.Line2D([], [], color=_DIVERGED_EDGE, linestyle="--", marker="x",
                                 label="diverged run"))
  fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
  return _finish(fig, "Training loss (mean over each logging window)",
                 [*_caption(res, seed_rule, chosen),
                  "loss $\\Sigma_i I_i (x_i - x'_i)^2$, batch mean"])


# 7. Input batches.


def plot_input_batch(ax, batch: np.ndarray, *, cmap: str = "viridis"):
  """Heatmap of one batch `[features, examples]` on [0, 1]; returns the image."""
  im = ax.imshow(np.asarray(batch, np.float64), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto",
                 interpolation="nearest")
  ax.set_xlabel("example", fontsize=9)
  ax.set_ylabel("feature", fontsize=9)
  ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.tick_params(labelsize=8)
  return im


def figure_input_batches(batches: Mapping[str, np.ndarray], *, cmap: str = "viridis",
                         title: str = "Input batches at two sparsities") -> Figure:
  """Side-by-side heatmaps of input batches (the study's input picture).

  Args:
    batches: label -> array `[features, examples]` with values in [0, 1], e.g.
      `{"S=0.5": x1, "S=0.99": x2}`.
    cmap: colormap (0 = feature absent).
    title: the figure title.

  Returns:
    The figure.
  """
  fig = Figure(figsize=(4.2 * len(batches) + 1.2, 4.0), layout="constrained")
  axes = fig.subplots(1, len(batches), squeeze=False, sharey=True).ravel()
  im = None
  shapes = set()
  for ax, (label, batch) in zip(axes, batches.items()):
    batch = np.asarray(batch)
    shapes.add(batch.shape)
    im = plot_input_batch(ax, batch, cmap=cmap)
    ax.set_title(f"{label}  ({np.mean(batch != 0):.0%} of entries nonzero)", fontsize=10)
  for ax in axes[1:]:
    ax.set_ylabel("")
  fig.colorbar(im, ax=list(axes), label="feature value $x_i$ (0 = absent)", shrink=0.9)
  dims = ", ".join(f"{f} features × {e} examples" for f, e in sorted(shapes))
  return _finish(fig, title, f"{dims}; each feature is U[0,1] with probability 1-S, else 0")
