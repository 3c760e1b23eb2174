"""Figures of the width-scaling experiment (Liu, Liu & Gore 2025), from its summary.

Everything is drawn from `scaling_law_summary.json`'s dict (`summary_scaling`), so the
figures and the numbers in the docs are the same numbers. The loss is per example,
summed over features (their figures' units); "typical seed" is the mean over seeds with
a 95 % t-interval, "best seed" the lowest loss at each width.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import cm, colors as mcolors, ticker
from matplotlib.figure import Figure

from superpos_jax.plotting.captions import finish
from superpos_jax.plotting.style import activation_colors, fmt, outer_labels, panel_grid
from superpos_jax.summary_scaling import STRONG, WEAK, exponents_of, read_part

DECAY_CMAP = cm.coolwarm_r  # as their figures: red -1 (strong) ... blue +1 (weak)
DECAY_NORM = mcolors.Normalize(-1.0, 1.0)
REGIMES = ((STRONG, "strong (γ = −1)", "#c0392b"), (WEAK, "weak (γ = +1)", "#2166ac"))
# The paper preset's checks of ReLU: (part, marker, what differs from the main run).
CHECKS = (("longer", "^", "8× examples"), ("n1000", "D", "n = 1000"),
          ("n1000_longer", "P", "n = 1000, 8× examples"))


def _settings(part: dict[str, Any]) -> list[str]:
  s, grid = part["settings"], read_part(part)
  return [f"n = {s['n']}", f"data {s['data']}", f"{s['steps']:,} steps of {s['batch_size']:,}",
          f"peak lr {fmt(s['lrs'][0])}, optimizer {s['optimizer']}", f"{len(grid.seeds)} seed(s)",
          f"widths {', '.join(str(int(m)) for m in grid.widths)}"]


PLAIN = ticker.FuncFormatter(lambda v, _: f"{v:g}")


def _width_axis(ax, widths: np.ndarray) -> None:
  """Log x axis ticked at the trained widths, plain numbers."""
  ax.set_xscale("log")
  ax.xaxis.set_major_locator(ticker.FixedLocator(np.asarray(widths, np.float64)))
  ax.xaxis.set_major_formatter(PLAIN)
  ax.xaxis.set_minor_locator(ticker.NullLocator())


def _log_axes(ax, widths: np.ndarray, xlabel: str = "hidden width m",
              ylabel: str = "loss (per example, Σ over features)"):
  _width_axis(ax, widths)
  ax.set_yscale("log")
  ax.yaxis.set_major_formatter(PLAIN)
  ax.yaxis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xlabel(xlabel, fontsize=9)
  ax.set_ylabel(ylabel, fontsize=9)
  ax.grid(alpha=0.3, which="both")
  ax.tick_params(labelsize=8)


def _slope_guide(ax, widths: np.ndarray, loss: np.ndarray) -> None:
  """A dashed m^-1 line through the geometric middle of the drawn losses."""
  finite = loss[np.isfinite(loss) & (loss > 0)]
  if finite.size == 0:
    return
  m = np.asarray(widths, np.float64)
  mid = np.exp(np.mean(np.log(finite)))
  ax.plot(m, mid * np.exp(np.mean(np.log(m))) / m, "k--", lw=0.8, alpha=0.6, label="∝ 1/m")


def figure_loss_vs_width(part: dict[str, Any], activation: str, title: str) -> Figure:
  """Loss against width on log-log axes, one panel per data exponent a, one line per
  weight decay (mean over seeds; the band spans the seeds)."""
  grid = read_part(part)
  act = grid.activations.index(activation)
  fig = Figure(layout="constrained")
  axes = panel_grid(fig, len(grid.exponents), max_cols=4, panel=(3.0, 2.6))
  for d, (ax, a) in enumerate(zip(axes, grid.exponents)):
    for w, wd in enumerate(grid.weight_decays):
      loss = grid.loss[act, d, w]  # [S, M]
      color = DECAY_CMAP(DECAY_NORM(wd))
      ax.plot(grid.widths, np.nanmean(loss, axis=0), "o-", ms=3, lw=1.3, color=color, label=f"γ = {wd:g}")
      if loss.shape[0] > 1:
        ax.fill_between(grid.widths, np.nanmin(loss, axis=0), np.nanmax(loss, axis=0), color=color,
                        alpha=0.15, lw=0)
    _slope_guide(ax, grid.widths, grid.loss[act, d])
    _log_axes(ax, grid.widths)
    ax.set_title(f"a = {fmt(a)}", fontsize=9)
  outer_labels(axes, 4)
  fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=8,
             title="weight decay", title_fontsize=9)
  return finish(fig, title, _settings(part) + [f"activation {activation}"],
                note="line: mean over seeds; band: lowest to highest seed")


def _legend(fig: Figure, ax, **kwargs) -> None:
  """The axes' legend on the figure, the typical-seed entries first and the laws last."""
  handles, labels = ax.get_legend_handles_labels()
  rank = lambda label: (0 if "typical" in label else 1 if "best" in label else
                        3 if "α_m" in label or "alpha" in label else 2)
  order = sorted(range(len(labels)), key=lambda i: rank(labels[i]))
  fig.legend([handles[i] for i in order], [labels[i] for i in order], **kwargs)


def _exponent_marks(ax, grid, ex, act: int, w: int, color: str, label: str, offset: float = 0.0):
  a = grid.exponents + offset
  mean, low, high = ex["typical"][act, :, w], ex["low"][act, :, w], ex["high"][act, :, w]
  err = np.where(np.isfinite(low), np.stack([mean - low, high - mean]), 0.0)
  ax.errorbar(a, mean, yerr=err, fmt="o-", ms=4, lw=1.2, capsize=2.5, color=color,
              label=f"{label}, typical seed")
  ax.plot(a, ex["best"][act, :, w], "x", ms=6, color=color, label=f"{label}, best seed")


def _theory(ax, a_max: float = 2.1) -> None:
  """Liu et al.'s two laws: α_m ≈ 1 (strong) and α_m = a - 1 for a > 1 (weak)."""
  a = np.linspace(0.0, a_max, 50)
  ax.plot(a, np.ones_like(a), ":", color="0.35", lw=1.0, label=r"$\alpha_m = 1$ (strong, Liu et al.)")
  a = a[a >= 1.0]
  ax.plot(a, a - 1.0, "--", color="0.35", lw=1.0, label=r"$\alpha_m = a - 1$ (weak, Liu et al.)")


def figure_relu_exponents(data: dict[str, Any]) -> Figure:
  """ReLU's model exponent against the data exponent a at γ = ±1, beside Liu et al.'s
  Fig. 4b columns γ = ±1 (digitised) and, where trained, the longer and n = 1000 checks."""
  part = data["parts"]["relu"]
  grid, ex = read_part(part), exponents_of(part)
  act = grid.activations.index("relu")
  fig = Figure(figsize=(7.6, 4.6), layout="constrained")
  ax = fig.subplots()
  published = data.get("comparison with Liu et al.")
  pub = _published_columns(data)
  for wd, label, color in REGIMES:
    if wd not in grid.weight_decays:
      continue
    _exponent_marks(ax, grid, ex, act, int(np.flatnonzero(grid.weight_decays == wd)[0]), color, label)
    if pub is not None:
      ax.plot(pub["a"], pub[wd], "s", mfc="none", ms=5, color=color, alpha=0.8,
              label=f"{label}, Liu et al. Fig. 4b (read off)")
  for check, marker, what in CHECKS:
    if check not in data["parts"]:
      continue
    cg, cx = read_part(data["parts"][check]), exponents_of(data["parts"][check])
    for wd, label, color in REGIMES:
      if wd in cg.weight_decays:
        w = int(np.flatnonzero(cg.weight_decays == wd)[0])
        ax.plot(cg.exponents, cx["typical"][0, :, w], marker, ms=6, color=color, mfc="white",
                label=f"{label}, {what}")
  _theory(ax)
  ax.set_xlabel(r"data exponent $a$  ($p_i \propto i^{-a}$)", fontsize=9)
  ax.set_ylabel(r"model exponent $\alpha_m$  (loss $\propto m^{-\alpha_m}$)", fontsize=9)
  ax.grid(alpha=0.3)
  _legend(fig, ax, loc="outside right center", fontsize=7)
  note = None if published is None else "Liu et al.: n = 1000, widths 10-100, 20,000 steps of 2,048, one seed"
  return finish(fig, "ReLU: the width exponent in strong and weak superposition", _settings(part), note=note)


def _published_columns(data: dict[str, Any]) -> dict | None:
  """Liu et al.'s Fig. 4b at γ = -1 and +1 over their 17 exponents, if the summary has them."""
  pub = data.get("published heatmaps")
  if pub is None:
    return None
  values = np.asarray(pub["model_exponent"]["values [a, weight decay]"])
  return {"a": np.asarray(pub["data_exponents"]), STRONG: values[:, 0], WEAK: values[:, -1]}


def figure_relu_represented(data: dict[str, Any]) -> Figure:
  """φ_1/2 against weight decay, one panel per a, one line per width (their Fig. 3a),
  with Liu et al.'s Fig. 3b at the nearest a (black, dashed)."""
  part = data["parts"]["relu"]
  grid = read_part(part)
  act = grid.activations.index("relu")
  pub = data.get("published heatmaps")
  norm = mcolors.Normalize(np.log(grid.widths.min()), np.log(grid.widths.max()) + 1e-9)
  fig = Figure(layout="constrained")
  axes = panel_grid(fig, len(grid.exponents), max_cols=4, panel=(3.0, 2.6))
  for d, (ax, a) in enumerate(zip(axes, grid.exponents)):
    for k, m in enumerate(grid.widths):
      ax.plot(grid.weight_decays, np.nanmean(grid.represented[act, d, :, :, k], axis=-1), "o--", ms=3.5,
              lw=1.1, color=cm.cividis(norm(np.log(m))))
    if pub is not None:
      k = int(np.argmin(np.abs(np.asarray(pub["data_exponents"]) - a)))
      ax.plot(pub["weight_decays"], np.asarray(pub["represented_fraction"]["values [a, weight decay]"])[k],
              "k:", lw=1.4, label=f"Liu et al. Fig. 3b, a = {pub['data_exponents'][k]:g}")
      ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"a = {fmt(a)}", fontsize=9)
    ax.set_xlabel("weight decay γ", fontsize=9)
    ax.set_ylabel(r"represented fraction $\phi_{1/2}$", fontsize=9)
    ax.set_ylim(-0.03, 1.05)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
  outer_labels(axes, 4)
  bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cm.cividis), ax=axes, shrink=0.8)
  bar.set_label("ln m", fontsize=9)
  return finish(fig, "ReLU: share of features with ‖W_i‖ > 1/2 against weight decay", _settings(part),
                note="mean over seeds; Liu et al.'s Fig. 3b does not state its width")


def figure_activation_exponents(part: dict[str, Any], longer: dict[str, Any] | None = None) -> Figure:
  """The model exponent against a, one panel per activation, strong and weak (and, where
  given, the `longer` part's strong exponents on 8× the examples, one seed)."""
  grid, ex = read_part(part), exponents_of(part)
  fig = Figure(layout="constrained")
  axes = panel_grid(fig, len(grid.activations), max_cols=4, panel=(3.0, 2.6), sharey=True)
  for act, (ax, name) in enumerate(zip(axes, grid.activations)):
    _theory(ax, grid.exponents.max() + 0.1)
    for wd, label, color in REGIMES:
      _exponent_marks(ax, grid, ex, act, int(np.flatnonzero(grid.weight_decays == wd)[0]), color, label)
    if longer is not None and name in longer["activations"]:
      lg, lx = read_part(longer), exponents_of(longer)
      ax.plot(lg.exponents, lx["typical"][lg.activations.index(name), :, 0], "^", ms=7, mfc="white",
              color=REGIMES[0][2], label=f"{REGIMES[0][1]}, 8× examples (1 seed)")
    ax.set_title(name, fontsize=9, color=activation_colors(grid.activations)[name])
    ax.set_xlabel(r"data exponent $a$", fontsize=9)
    ax.set_ylabel(r"model exponent $\alpha_m$", fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
  outer_labels(axes, 4)
  _legend(fig, axes[0], loc="outside right center", fontsize=8)
  return finish(fig, "Does loss ∝ 1/m under strong superposition survive the activation?",
                _settings(part), note="bars: 95 % t-interval over seeds; crosses: best seed at each width")


def figure_activation_loss(part: dict[str, Any]) -> Figure:
  """Loss against width, one column per activation, rows γ = -1 and +1, a line per a."""
  grid = read_part(part)
  A = len(grid.activations)
  fig = Figure(figsize=(2.3 * A + 1.0, 5.4), layout="constrained")
  axes = fig.subplots(2, A, sharey="row", squeeze=False)
  shades = cm.viridis(np.linspace(0.0, 0.85, len(grid.exponents)))
  for r, (wd, label, _) in enumerate(REGIMES):
    w = int(np.flatnonzero(grid.weight_decays == wd)[0])
    for act, name in enumerate(grid.activations):
      ax = axes[r, act]
      for d, a in enumerate(grid.exponents):
        ax.plot(grid.widths, np.nanmean(grid.loss[act, d, w], axis=0), "o-", ms=3, lw=1.2, color=shades[d],
                label=f"a = {fmt(a)}")
      _slope_guide(ax, grid.widths, grid.loss[act, :, w])
      _log_axes(ax, grid.widths, ylabel=f"loss, {label}" if act == 0 else "")
      ax.set_title(name if r == 0 else "", fontsize=9)
      if r == 0:
        ax.set_xlabel("")
  fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center", fontsize=8)
  return finish(fig, "Loss against hidden width per activation", _settings(part),
                note="mean over seeds; dashed: ∝ 1/m")


def figure_activation_dstar(part: dict[str, Any]) -> Figure:
  """D* and φ_1/2 against width, columns γ = -1 and +1, one line per activation, at
  the middle data exponent."""
  grid = read_part(part)
  d = len(grid.exponents) // 2
  colors = activation_colors(grid.activations)
  fig = Figure(figsize=(9.6, 6.2), layout="constrained")
  axes = fig.subplots(2, 2, sharex=True)
  for c, (wd, label, _) in enumerate(REGIMES):
    w = int(np.flatnonzero(grid.weight_decays == wd)[0])
    for act, name in enumerate(grid.activations):
      for r, values in enumerate((grid.dstar, grid.represented)):
        axes[r, c].plot(grid.widths, np.nanmean(values[act, d, w], axis=0), "o-", ms=3, lw=1.3,
                        color=colors[name], label=name)
    axes[0, c].set_title(label, fontsize=9)
    axes[1, c].set_ylim(-0.03, 1.05)
  for ax, ylabel in zip(axes[:, 0], (r"$D^* = m\,/\,\|W\|_F^2$", r"represented fraction $\phi_{1/2}$")):
    ax.set_ylabel(ylabel, fontsize=9)
  for ax in axes.ravel():
    _width_axis(ax, grid.widths)
    ax.grid(alpha=0.3, which="both")
    ax.tick_params(labelsize=8)
  for ax in axes[1]:
    ax.set_xlabel("hidden width m", fontsize=9)
  for ax in axes[0]:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(PLAIN)
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
  fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center", fontsize=8)
  return finish(fig, f"Dimensions per feature and represented features, a = {fmt(grid.exponents[d])}",
                _settings(part),
                note="mean over seeds; D* reads 'dimensions per feature' only where ‖W_i‖ ≈ 1")


def figures(data: dict[str, Any]) -> dict[str, Figure]:
  """Every figure the summary's parts allow, by file suffix."""
  out = {}
  parts = data["parts"]
  if "relu" in parts:
    out["relu_loss"] = figure_loss_vs_width(parts["relu"], "relu",
                                            "ReLU: loss against hidden width (their data, values U(0, 2))")
    out["relu_exponents"] = figure_relu_exponents(data)
    out["relu_represented"] = figure_relu_represented(data)
  if "activations" in parts:
    out["activations_exponents"] = figure_activation_exponents(parts["activations"],
                                                               parts.get("activations_longer"))
    out["activations_loss"] = figure_activation_loss(parts["activations"])
    out["activations_dstar"] = figure_activation_dstar(parts["activations"])
  return out
