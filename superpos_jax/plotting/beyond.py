"""Figures of the "beyond the study" experiments (SCIENCE.md, "Beyond the study").

Each draws a number of `summary_beyond` (best seed, the result's first importance, lr,
weight decay and init scale) against density or init scale, one line per activation, so
that a figure and its `<name>_summary.json` show the same values. A diverged model is a
gap in its line.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from superpos_jax import results, summary, summary_beyond
from superpos_jax.plotting.captions import caption, finish
from superpos_jax.plotting.panels import prepare
from superpos_jax.plotting.style import activation_colors, fmt


def plot_activation_lines(ax, x: np.ndarray, values: np.ndarray, acts: Sequence[str], *,
                          xlabel: str, ylabel: str) -> None:
  """One line per activation: `values [A, X]` against `x [X]` on a log x axis.

  Args:
    ax: the Axes.
    x: the x coordinates (densities or init scales), in any order.
    values: `[A, X]`; NaN leaves a gap.
    acts: activation names, in `values`' order.
    xlabel, ylabel: the axis labels.
  """
  colors = activation_colors(acts)
  order = np.argsort(x)
  for a, act in enumerate(acts):
    ax.plot(np.asarray(x)[order], np.asarray(values[a], np.float64)[order], marker="o",
            markersize=3.5, linewidth=1.4, color=colors[act], label=act)
  ax.set_xscale("log")
  # A grid spanning less than a decade would get crowded minor-tick labels.
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xlabel(xlabel, fontsize=9)
  ax.set_ylabel(ylabel, fontsize=9)
  ax.grid(alpha=0.3)
  ax.tick_params(labelsize=8)


def _settings(result: results.SweepResult, families: str | None = None) -> list[str]:
  """The caption of the slice `summary_beyond.best_grid` takes (first of each setting)."""
  res, _, chosen, _, _ = prepare(result, None, None, "best")
  return caption(res, "best", chosen, families=families)


def _legend(fig: Figure, ax) -> None:
  fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", fontsize=8,
             title="activation", title_fontsize=9)


def figure_features_per_neuron(result: results.SweepResult) -> Figure:
  """Mean features per neuron and the polysemantic fraction vs density (privileged model).

  Args:
    result: a result of the privileged model (any n, m).

  Returns:
    Two panels: the mean count of features i with `|W_ki| > NEURON_WEIGHT` per neuron k,
    and the fraction of neurons carrying at least two.
  """
  mean, poly = summary_beyond.neuron_statistics(result)
  acts = [str(a) for a in result.coords["activation"]]
  dens = result.coords["density"]
  fig = Figure(figsize=(9.5, 4.0), layout="constrained")
  left, right = fig.subplots(1, 2)
  t = fmt(summary_beyond.NEURON_WEIGHT)
  plot_activation_lines(left, dens, mean, acts, xlabel="density 1-S",
                        ylabel=f"mean features per neuron ($|W_{{ki}}| > {t}$)")
  plot_activation_lines(right, dens, poly, acts, xlabel="density 1-S",
                        ylabel="fraction of neurons with ≥ 2 features")
  right.set_ylim(-0.05, 1.05)
  _legend(fig, left)
  return finish(fig, "Features per neuron vs density", _settings(result),
                f"neuron k carries feature i when |W_ki| > {t}")


def figure_pair_cosines(correlated: results.SweepResult,
                        anticorrelated: results.SweepResult) -> Figure:
  """Mean cosine between the columns of a feature pair vs density, per data family.

  Args:
    correlated, anticorrelated: results of the two pair data families.

  Returns:
    Two panels sharing y in [-1, 1], with TMS's ReLU expectations (0 and -1) dashed.
  """
  fig = Figure(figsize=(9.5, 4.0), layout="constrained")
  axes = fig.subplots(1, 2, sharey=True)
  for ax, res, name, expected in ((axes[0], correlated, "correlated", 0.0),
                                  (axes[1], anticorrelated, "anticorrelated", -1.0)):
    cos, _ = summary_beyond.pair_cosine_grid(res)
    acts = [str(a) for a in res.coords["activation"]]
    plot_activation_lines(ax, res.coords["density"], cos, acts, xlabel="density 1-S",
                          ylabel=r"mean $\cos(W_{2k}, W_{2k+1})$")
    ax.axhline(expected, color="0.3", linestyle="--", linewidth=1.0,
               label="TMS, ReLU: 0 (left), -1 (right)")
    ax.set_title(f"{name} pairs", fontsize=10, fontweight="bold")
  axes[0].set_ylim(-1.1, 1.1)
  _legend(fig, axes[1])
  return finish(fig, "Do correlated pairs go orthogonal and anticorrelated pairs antipodal?",
                _settings(correlated, f"{correlated.spec.model} model, correlated (left) and "
                          "anticorrelated (right) feature pairs"),
                f"mean over pairs with both ||W_i|| > {fmt(summary_beyond.PAIR_NORM)}; "
                "a gap: no pair embedded")


def figure_computed_features(result: results.SweepResult, counts: np.ndarray) -> Figure:
  """Features the `abs` model computes vs density, one line per activation.

  Args:
    result: a result of the `abs` model.
    counts: `[A, D]` computed features (`summary_beyond.computed_from_outputs` of the
      isolated outputs, which need jax: `probes.best_seed_outputs`).

  Returns:
    One panel, with n (every feature) and m/2 (two ReLU neurons per feature) dashed.
  """
  acts = [str(a) for a in result.coords["activation"]]
  spec = result.spec
  fig = Figure(figsize=(8.0, 4.5), layout="constrained")
  ax = fig.subplots()
  plot_activation_lines(ax, result.coords["density"], counts, acts, xlabel="density 1-S",
                        ylabel="computed features")
  for y, style, label in ((spec.n, ":", "n: every feature"),
                          (spec.m / 2, "--", "m/2: two neurons per feature")):
    ax.axhline(y, color="0.4", linestyle=style, linewidth=0.9, label=label)
  ax.set_ylim(-0.5, spec.n + 0.5)
  _legend(fig, ax)
  return finish(fig, "Computation in superposition: features computed vs density",
                _settings(result), "feature i computed: with only x_i present, output i has "
                f"R² > {fmt(summary_beyond.COMPUTED_R2)} against |x_i| over x_i in [-1, 1]")


def figure_init_scale_overview(n2: results.SweepResult, n200: results.SweepResult,
                               n2_long: results.SweepResult | None = None) -> Figure:
  """Against the init scale α: the n = 2 superposition fraction at density < 0.1 (best
  and typical seed) and the n = 200 D* at the sparsest density (best seed).

  Args:
    n2: an n = 2 result with an init-scale axis.
    n200: an n = 200 result with an init-scale axis.
    n2_long: the n = 2 grid at one α trained longer, drawn as open stars.

  Returns:
    Three panels, one line per activation.
  """
  fig = Figure(figsize=(13.0, 4.0), layout="constrained")
  best, typical, right = fig.subplots(1, 3)
  acts = [str(a) for a in n2.coords["activation"]]
  colors = activation_colors(acts)
  for ax, rule in ((best, "best"), (typical, summary.PER_SEED)):
    plot_activation_lines(ax, n2.coords["init_scale"],
                          summary_beyond.superposition_by_scale(n2, rule), acts,
                          xlabel="init scale α",
                          ylabel=f"n=2: fraction in superposition, 1-S < {summary.DENSITY_EDGES[0]}")
    if n2_long is not None:
      long = summary_beyond.superposition_by_scale(n2_long, rule)[:, 0]
      for a, act in enumerate(acts):
        ax.plot(n2_long.coords["init_scale"], [long[a]], marker="*", markersize=11,
                markerfacecolor="none", color=colors[act], linestyle="none",
                label=f"{n2_long.spec.steps:,} steps" if a == 0 else None)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"n=2, {summary.SEED_LABELS[rule]}", fontsize=10, fontweight="bold")
  sparsest = summary_beyond.dstar_by_scale(n200)[..., 1]
  plot_activation_lines(right, n200.coords["init_scale"], sparsest,
                        [str(a) for a in n200.coords["activation"]], xlabel="init scale α",
                        ylabel="n=200: D* at the sparsest density")
  right.set_title("n=200, best seed", fontsize=10, fontweight="bold")
  _legend(fig, best)
  settings = [f"{label}: " + ", ".join(p for p in _settings(res)[1:3] if "init scale" not in p)
              for label, res in (("left two, n=2, m=1", n2), ("right, n=200, m=20", n200))]
  return finish(fig, "What the init scale changes", settings,
                "typical seed: every (point, seed) counted; left two from the n=2 phase "
                "diagrams (open stars: the same grid trained longer), right from the n=200 "
                "D* curves")


def figure_dstar_variants(curves: dict[str, tuple[np.ndarray, np.ndarray]],
                          settings: Sequence[str], *,
                          marks: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                          title: str = r"$D^* = m/\|W\|_F^2$ of model variants vs sparsity"
                          ) -> Figure:
  """`D*` against `1/(1-S)`, one line per named variant (e.g. where SoLU's softmax runs).

  Args:
    curves: label -> (densities `[D]`, `D* [D]`); NaN leaves a gap.
    settings: the caption phrases (n, m, steps, ...), e.g. `captions.caption`'s.
    marks: optional label -> (densities, values) drawn as hollow markers without a line
      (values read off a published figure, say, rather than computed here).
    title: the figure title.

  Returns:
    The figure, with TMS's guide lines at 1 and 1/2.
  """
  fig = Figure(figsize=(8.4, 4.4), layout="constrained")
  ax = fig.add_subplot()
  for i, (label, (dens, dstar)) in enumerate(curves.items()):
    x = 1.0 / np.asarray(dens, np.float64)
    order = np.argsort(x)
    ax.plot(x[order], np.asarray(dstar, np.float64)[order], marker="o", markersize=3.5,
            linewidth=1.4, color=f"C{i}", label=label)
  for i, (label, (dens, values)) in enumerate((marks or {}).items()):
    ax.plot(1.0 / np.asarray(dens, np.float64), values, linestyle="none", marker="DsP"[i % 3],
            markersize=9, markerfacecolor="none", markeredgewidth=1.6, color="k", label=label)
  for y in (1.0, 0.5):
    ax.axhline(y, color="0.4", linestyle="--", linewidth=0.8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xlabel("1 / (1 - S)", fontsize=9)
  ax.set_ylabel(r"$D^* = m / \|W\|_F^2$ (log)", fontsize=9)
  ax.grid(alpha=0.3, which="both")
  ax.tick_params(labelsize=8)
  fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", fontsize=8,
             title="variant", title_fontsize=9)
  return finish(fig, title, list(settings), note="dashed: 1 and 1/2 (TMS's sticky values)")
