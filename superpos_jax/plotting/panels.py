"""The slice of a result a figure shows, and the two panel grids figures are made of.

Every sweep figure either draws one model per panel in an activation × density grid
(`activation_density_panels`: Gram matrices, feature norms, neurons) or one panel per
activation (`activation_panels`: phase diagrams, feature dimensionality, loss curves).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from matplotlib.figure import Figure

from superpos_jax import results
from superpos_jax.plotting.style import fmt, is_diverged, mark_diverged, outer_labels, panel_grid


def _select(result: results.SweepResult, importance: Any, lr: Any, keep_importance: bool,
            **settings: Any) -> tuple[results.SweepResult, dict[str, float]]:
  """Fixes one importance, lr, weight decay and init scale (default: the first value of
  each axis the result has), keeping the seed axis."""
  chosen = {}
  for axis, value in (("importance", importance), ("lr", lr), *settings.items()):
    if axis in result.coords and not (axis == "importance" and keep_importance):
      chosen[axis] = float(result.coords[axis][0]) if value is None else value
  return result.sel(**chosen), chosen


def prepare(result: results.SweepResult, importance: Any, lr: Any, seed_rule: str, *,
            keep_importance: bool = False, weight_decay: Any = None, init_scale: Any = None):
  """What a figure starts from: the chosen slice, with and without its seed axis.

  Args:
    result: a sweep result.
    importance, lr, weight_decay, init_scale: the values to show (None: the first
      coordinate value).
    seed_rule: how to collapse seeds (`SweepResult.reduce_seeds`).
    keep_importance: leave the importance axis alone (the phase diagrams' y axis).

  Returns:
    (selected result with seeds, seed-reduced result, chosen coordinates, activation
    names, densities).
  """
  res, chosen = _select(result, importance, lr, keep_importance, weight_decay=weight_decay,
                        init_scale=init_scale)
  red = res.reduce_seeds(seed_rule) if "seed" in res.coords else res
  acts = [str(a) for a in red.coords["activation"]]
  return res, red, chosen, acts, red.coords["density"]


def short_lines(name: str, width: int = 10) -> str:
  """`name` broken after underscores into lines of about `width` characters, so a long
  activation name ("sigmoid_stretched_0p01") fits beside a panel row."""
  lines = [""]
  for part in name.split("_"):
    piece = part if not lines[-1] else "_" + part
    if lines[-1] and len(lines[-1]) + len(piece) > width:
      lines[-1] += "_"
      lines.append(part)
    else:
      lines[-1] += piece
  return "\n".join(lines)


def activation_density_panels(grid: Sequence[Sequence[Any]], red: results.SweepResult,
                              draw: Callable[[Any, int, int], None], *, row_label: str = "{}",
                              label_style: Mapping[str, Any] | None = None,
                              xlabel: str | None = None,
                              style: Callable[[Any, int, int], None] | None = None) -> bool:
  """Fills a grid of panels, row = activation, column = density, one model each.

  A diverged model's panel is hatched grey instead of drawn; the first row carries the
  density titles, the first column the activation names.

  Args:
    grid: `[A][D]` panels, each one Axes or a tuple of Axes drawn as one panel (e.g. a
      Gram matrix and its bias strip); the first Axes of a tuple carries the labels.
    red: the seed-reduced result, axes (activation, density).
    draw: `draw(panel, a, d)` draws the healthy model at activation a, density d.
    row_label: y label of the first column; `{}` is replaced by the activation name.
    label_style: text properties of the row labels (default: fontsize 9).
    xlabel: x label of the last row, if any.
    style: `style(panel, a, d)` run on every panel, diverged or not (limits, ticks).

  Returns:
    Whether any panel was drawn as diverged.
  """
  acts, dens = red.coords["activation"], red.coords["density"]
  any_bad = False
  for a, act in enumerate(acts):
    for d in range(len(dens)):
      panel = grid[a][d]
      axes = panel if isinstance(panel, tuple) else (panel,)
      W = red.data["W"][a, d] if "W" in red.data else 0.0  # no weights under trimmed_mean
      if is_diverged(W, red["diverged"][a, d]):
        any_bad = True
        for i, ax in enumerate(axes):
          mark_diverged(ax, label=i == 0)
      else:
        draw(panel, a, d)
      if style is not None:
        style(panel, a, d)
      if a == 0:
        axes[0].set_title(f"1-S = {fmt(dens[d])}", fontsize=10)
      if d == 0:
        axes[0].set_ylabel(row_label.format(short_lines(str(act))),
                           **(label_style or {"fontsize": 9}))
      if xlabel and a == len(acts) - 1:
        axes[0].set_xlabel(xlabel, fontsize=9)
  return any_bad


def activation_panels(fig: Figure, acts: Sequence[str], draw: Callable[[Any, int, str], None],
                      *, panel: tuple[float, float], extra: int = 0, **kwargs) -> list:
  """One panel per activation, titled with its name, in a grid of up to 4 columns.

  Args:
    fig: the figure (its size is set from the panel count).
    acts: activation names.
    draw: `draw(ax, a, act)` fills the panel of activation index a.
    panel: size of one panel in inches.
    extra: blank panels appended after the activations' (e.g. a colour key).
    **kwargs: passed to `Figure.subplots` (e.g. `sharey=True`).

  Returns:
    All the panels' Axes, the extra ones last.
  """
  axes = panel_grid(fig, len(acts) + extra, panel=panel, **kwargs)
  for a, (ax, act) in enumerate(zip(axes, acts)):
    draw(ax, a, act)
    ax.set_title(act, fontsize=10, fontweight="bold")
  outer_labels(axes)
  return axes

