"""The look every figure shares: colours, diverged marks, panel layout and `save_figure`."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from matplotlib import cm
from matplotlib import lines as mlines
from matplotlib import patches as mpatches
from matplotlib import ticker
from matplotlib.figure import Figure

from superpos_jax import results

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
    "sigmoid_stretched_0p01": "#f7b6d2",
    "sigmoid_stretched_0p3": "#c51b7d",
}
_SPARE_COLORS = ("#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#98df8a", "#ff9896",
                 "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")

DIVERGED_FACE = "0.82"
DIVERGED_EDGE = "0.35"


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


def feature_colors(n: int) -> list:
  """One colour per feature index: qualitative up to 20 features, a ramp beyond."""
  if n <= 10:
    return [cm.tab10(i) for i in range(n)]
  if n <= 20:
    return [cm.tab20(i) for i in range(n)]
  return [cm.viridis(i / (n - 1)) for i in range(n)]


def feature_ticks(ax, n: int, axis: str = "y") -> None:
  """Ticks every feature index up to 12 features, a few integer ticks beyond."""
  loc = (ticker.FixedLocator(range(n)) if n <= 12
         else ticker.MaxNLocator(nbins=5, integer=True))
  (ax.yaxis if axis == "y" else ax.xaxis).set_major_locator(loc)


def fmt(x: float) -> str:
  """A coordinate value as figures print it (3 significant digits)."""
  return f"{float(x):.3g}"


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


# Diverged models (NaN/inf weights or loss): grey hatching or grey crosses, never numbers.


def is_diverged(W: np.ndarray, diverged: Any) -> bool:
  """Whether a model must be drawn as diverged: flagged, or with non-finite weights."""
  return bool(np.any(diverged)) or not np.all(np.isfinite(W))


def diverged_patch() -> mpatches.Patch:
  """Legend entry of the grey hatched 'diverged' cells and panels."""
  return mpatches.Patch(facecolor=DIVERGED_FACE, edgecolor=DIVERGED_EDGE, hatch="///",
                        label="diverged (NaN/inf)")


def diverged_marker() -> mlines.Line2D:
  """Legend entry of the grey 'diverged' crosses."""
  return mlines.Line2D([], [], color=DIVERGED_EDGE, marker="x", linestyle="none",
                       label="diverged (NaN/inf)")


def diverged_legend(fig: Figure, handle: Any) -> None:
  """Puts a lone 'diverged' legend entry in the figure's lower right corner."""
  fig.legend(handles=[handle], loc="outside lower right", fontsize=8)


def mark_diverged(ax, label: bool = True) -> None:
  """Covers a whole panel with the grey hatched 'diverged' pattern."""
  ax.add_patch(mpatches.Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor=DIVERGED_FACE,
                                  edgecolor=DIVERGED_EDGE, hatch="///", linewidth=0, zorder=5))
  if label:
    ax.text(0.5, 0.5, "diverged", transform=ax.transAxes, ha="center", va="center", fontsize=8,
            zorder=6, bbox=dict(facecolor="white", edgecolor="none", pad=1))


def hatch_cells(ax, x_edges, y_edges, mask) -> None:
  """Grey hatched rectangles over the cells `mask[y, x]` of a mesh (diverged models)."""
  for yi, xi in zip(*np.nonzero(mask)):
    ax.add_patch(mpatches.Rectangle((x_edges[xi], y_edges[yi]), x_edges[xi + 1] - x_edges[xi],
                                    y_edges[yi + 1] - y_edges[yi], facecolor=DIVERGED_FACE,
                                    edgecolor=DIVERGED_EDGE, hatch="///", linewidth=0, zorder=3))


# Layout.


def panel_grid(fig: Figure, count: int, max_cols: int = 4, panel: tuple[float, float] = (3.2, 2.6),
               **kwargs) -> list:
  """`count` axes in a grid of at most `max_cols` columns; sets the figure size."""
  ncols = min(count, max_cols)
  nrows = -(-count // ncols)
  fig.set_size_inches(panel[0] * ncols + 1.5, panel[1] * nrows + 1.2)
  axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs).ravel()
  for ax in axes[count:]:
    ax.remove()
  return list(axes[:count])


def outer_labels(axes: Sequence, max_cols: int = 4) -> None:
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


def log_edges(centres: np.ndarray) -> np.ndarray:
  """Cell edges for sorted positive centres, midway between neighbours in log space."""
  logc = np.log(np.asarray(centres, np.float64))
  if logc.size == 1:
    half = np.log(10.0) / 4
    return np.exp(np.array([logc[0] - half, logc[0] + half]))
  mid = (logc[1:] + logc[:-1]) / 2
  return np.exp(np.concatenate([[2 * logc[0] - mid[0]], mid, [2 * logc[-1] - mid[-1]]]))
