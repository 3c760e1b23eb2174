"""Input batches as heatmaps: what a sparse input looks like at a given S."""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from superpos_jax.plotting.captions import finish


def plot_input_batch(ax, batch: np.ndarray, *, cmap: str = "viridis"):
  """Heatmap of one batch on [0, 1].

  Args:
    ax: the Axes.
    batch: `[features, examples]`, values in [0, 1].
    cmap: colormap (0 = feature absent).

  Returns:
    The image (for a colorbar).
  """
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
  return finish(fig, title, f"{dims}; each feature is U[0,1] with probability 1-S, else 0")
