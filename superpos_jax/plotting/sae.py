"""Figures of the SAE recovery experiment (SCIENCE.md, "SAE feature recovery").

Each reads `sae_results.SAEResult`s and draws the numbers of `summary_sae` (so a figure
and `sae_recovery_summary.json` show the same values), at one dictionary multiple and
L1 coefficient, the "setting" of the caption.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from superpos_jax.sae import summary as summary_sae
from superpos_jax.plotting.beyond import plot_activation_lines
from superpos_jax.plotting.captions import finish
from superpos_jax.plotting.style import activation_colors, fmt
from superpos_jax.sae.results import SAEResult


def _setting(result: SAEResult, mult: int, l1: float) -> tuple[int, int]:
  return (result.index("dict_multiple", mult), result.index("l1", l1))


def _study_label(result: SAEResult) -> str:
  spec = result.toy_spec
  return f"n = {spec.n} → m = {spec.m}"


def _caption(studies: Sequence[SAEResult], mult: int, l1: float) -> list[str]:
  first = studies[0]
  sae, toy = first.sae_spec, first.toy_spec
  return [f"{toy.model} toy models, {len(toy.seeds)} toy seeds, {toy.steps:,} steps",
          f"SAEs: dictionary {mult}·n, λ = {fmt(l1)}, {len(sae.sae_seeds)} SAE seeds, "
          f"{sae.steps:,} Adam steps of {sae.batch_size}"]


def figure_sae_recovery(studies: Sequence[SAEResult], mult: int, l1: float) -> Figure:
  """Recovered fraction and MMCS of the embedded features vs density, per activation.

  Args:
    studies: SAE results of one or more toy grids (one row each).
    mult, l1: the dictionary multiple and L1 coefficient drawn.

  Returns:
    One row per study; columns: fraction of embedded features recovered (best seed,
    typical seed), MMCS over embedded features (best, typical), embedded features and
    features in superposition (best toy seed).
  """
  fig = Figure(figsize=(17.0, 3.3 * len(studies) + 1.4), layout="constrained")
  axes = fig.subplots(len(studies), 5, squeeze=False)
  c = fmt(summary_sae.RECOVERED_COSINE)
  for row, res in zip(axes, studies):
    values = summary_sae.sae_values(res)
    _panels(row[:4], res, values, mult, l1, (
        ("fraction recovered", summary_sae.BEST, f"recovered (cos > {c}), best seed"),
        ("fraction recovered", summary_sae.TYPICAL, f"recovered (cos > {c}), typical seed"),
        ("mmcs", summary_sae.BEST, "MMCS, best seed"),
        ("mmcs", summary_sae.TYPICAL, "MMCS, typical seed")), "\n(of embedded features)")
    acts = [str(a) for a in res.coords["activation"]]
    dens = res.coords["density"]
    toy_best, _ = summary_sae.best_seed_index(res)
    pick = lambda x: summary_sae.pick_toy(x, toy_best)
    colors = activation_colors(acts)
    order = np.argsort(dens)
    for a, act in enumerate(acts):
      row[4].plot(dens[order], pick(values["embedded"])[a][order], color=colors[act],
                  marker="o", markersize=3, linewidth=1.2, label=act)
      row[4].plot(dens[order], pick(values["superposed"])[a][order], color=colors[act],
                  marker="x", markersize=4, linewidth=1.0, linestyle=":")
    row[4].set_xscale("log")
    row[4].set_xlabel("density 1-S", fontsize=9)
    row[4].set_ylabel("embedded (—) / in superposition (⋯)\nfeatures, best toy seed", fontsize=9)
    row[4].grid(alpha=0.3)
    row[4].tick_params(labelsize=8)
    row[0].set_title(_study_label(res), fontsize=10, fontweight="bold", loc="left")
  fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center", fontsize=8,
             title="activation", title_fontsize=9)
  return finish(fig, "Do SAEs recover the toy models' features?", _caption(studies, mult, l1),
                [f"counted over embedded features (||W_i|| > {fmt(summary_sae.EMBEDDED_NORM)}); "
                 f"best seed: toy seed of lowest toy loss, SAE seed of lowest SAE loss; "
                 "typical: median over (toy seed, SAE seed) pairs"])


def _panels(axes, res: SAEResult, values: dict, mult: int, l1: float,
            panels: Sequence[tuple[str, str, str]], suffix: str = "") -> None:
  """One statistic per axes against density: `(name in values, seed rule, y label)`."""
  k, j = _setting(res, mult, l1)
  acts = [str(a) for a in res.coords["activation"]]
  for ax, (name, rule, ylabel) in zip(axes, panels):
    v = summary_sae.reduce(values[name], res, rule)[:, :, k, j]
    plot_activation_lines(ax, res.coords["density"], v, acts, xlabel="density 1-S",
                          ylabel=ylabel + suffix)
    ax.set_ylim(-0.05, 1.05)


def figure_sae_one_to_one(studies: Sequence[SAEResult], mult: int, l1: float) -> Figure:
  """SAELens's one-to-one metrics vs density, per activation (`sae_metrics`).

  Args:
    studies: SAE results of one or more toy grids (one row each).
    mult, l1: the dictionary multiple and L1 coefficient drawn.

  Returns:
    One row per study; columns: MCC (best seed, typical seed), F1 of the latents as
    detectors (best, typical), uniqueness and explained variance (typical seed).
  """
  fig = Figure(figsize=(20.0, 3.3 * len(studies) + 1.4), layout="constrained")
  axes = fig.subplots(len(studies), 6, squeeze=False)
  for row, res in zip(axes, studies):
    _panels(row, res, summary_sae.sae_values(res), mult, l1, (
        ("mcc", summary_sae.BEST, "MCC (one-to-one), best seed"),
        ("mcc", summary_sae.TYPICAL, "MCC (one-to-one), typical seed"),
        ("f1", summary_sae.BEST, "F1 of latents as detectors, best seed"),
        ("f1", summary_sae.TYPICAL, "F1 of latents as detectors, typical"),
        ("uniqueness", summary_sae.TYPICAL, "uniqueness, typical seed"),
        ("explained variance", summary_sae.TYPICAL, "explained variance, typical seed")))
    row[0].set_title(_study_label(res), fontsize=10, fontweight="bold", loc="left")
  fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center", fontsize=8,
             title="activation", title_fontsize=9)
  return finish(fig, "SAEs scored as SAELens scores synthetic data (one-to-one matching)",
                _caption(studies, mult, l1),
                ["against the embedded features (||W_i|| > "
                 f"{fmt(summary_sae.EMBEDDED_NORM)}), every latent counted (dead ones too); "
                 "MCC: mean |cos| of a Hungarian matching; F1: each latent against its best "
                 "|cos| feature; uniqueness: distinct best-matched features / latents"])


def figure_sae_by_superposition(studies: Sequence[SAEResult], mult: int, l1: float) -> Figure:
  """Fraction of embedded features recovered against the number in superposition.

  Every (activation, density) point of the best seed is a marker; activations that put
  the same number of features in superposition can then be compared directly.
  """
  fig = Figure(figsize=(5.0 * len(studies) + 1.6, 4.2), layout="constrained")
  axes = fig.subplots(1, len(studies), squeeze=False)[0]
  for ax, res in zip(axes, studies):
    values = summary_sae.sae_values(res)
    k, j = _setting(res, mult, l1)
    frac = summary_sae.reduce(values["fraction recovered"], res, summary_sae.BEST)[:, :, k, j]
    toy_best, _ = summary_sae.best_seed_index(res)
    sup = summary_sae.pick_toy(values["superposed"], toy_best)
    acts = [str(a) for a in res.coords["activation"]]
    colors = activation_colors(acts)
    offsets = np.linspace(-0.25, 0.25, len(acts))  # side by side at equal counts
    for a, act in enumerate(acts):
      ax.scatter(sup[a] + offsets[a], frac[a], color=colors[act], s=22, label=act,
                 edgecolor="white", linewidth=0.4)
    ax.set_xlabel("features in superposition (best toy seed)", fontsize=9)
    ax.set_ylabel("fraction of embedded features recovered, best seed", fontsize=9)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(_study_label(res), fontsize=10, fontweight="bold", loc="left")
  fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=8,
             title="activation", title_fontsize=9)
  return finish(fig, "SAE recovery at equal numbers of features in superposition",
                _caption(studies, mult, l1),
                [f"in superposition: embedded and Σ_(j≠i) (Ŵ_i·W_j)² > {fmt(summary_sae.SUPERPOSED)}; "
                 "one marker per density"])


def _matched_latents(cos: np.ndarray, alive: np.ndarray) -> np.ndarray:
  """Live latents ordered by the feature they match best (then by cosine)."""
  live = np.flatnonzero(alive)
  best = np.argmax(cos[:, live], axis=0)
  order = np.lexsort((-cos[best, live], best))
  return live[order]


def figure_sae_dictionaries(result: SAEResult, points: Sequence[tuple[str, float]],
                            mult: int, l1: float) -> Figure:
  """The true feature directions next to the learned dictionary, for a few points.

  Args:
    result: an SAE result.
    points: `(activation, density)` pairs, one row each (best toy and SAE seed).
    mult, l1: the dictionary multiple and L1 coefficient drawn.

  Returns:
    Per point: the unit true directions `Ŵ_i [m, n]` (grey labels: not embedded), the
    live latents' decoder columns `d_j [m, live]` ordered by the feature each matches,
    and `cos(W_i, d_j)` between them.
  """
  res = summary_sae.first_setting(result)
  k, j = _setting(res, mult, l1)
  toy_best, sae_best = summary_sae.best_seed_index(result)
  fig = Figure(figsize=(15.0, 2.6 * len(points) + 1.4), layout="constrained")
  axes = fig.subplots(len(points), 3, squeeze=False, width_ratios=(1.0, 2.0, 2.0))
  n = res.toy_spec.n
  for row, (act, dens) in zip(axes, points):
    a, d = res.index("activation", act), res.index("density", dens)
    s = toy_best[a, d]
    r = sae_best[a, d, s, k, j]
    W = res.toy["toy_W"][a, d, s]
    norms = np.linalg.norm(W, axis=0)
    unit = np.where(norms > 0, W / np.where(norms > 0, norms, 1.0), 0.0)
    D = res["decoder"][a, d, s, k, j, r]
    freq = res["frequency"][a, d, s, k, j, r]
    D, freq = D[:, np.isfinite(freq)], freq[np.isfinite(freq)]
    cos = unit.T @ D
    order = _matched_latents(cos, freq > 0)
    emb = norms > summary_sae.EMBEDDED_NORM
    rec = (res["max_cosine"][a, d, s, k, j, r] > summary_sae.RECOVERED_COSINE) & emb
    kw = dict(cmap="coolwarm", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    row[0].imshow(unit, **kw)
    row[0].set_title(f"{act}, 1-S = {fmt(dens)}: true Ŵ_i", fontsize=9, loc="left")
    row[1].imshow(D[:, order] if order.size else np.zeros((W.shape[0], 1)), **kw)
    row[1].set_title(f"dictionary: {order.size} live of {D.shape[1]} latents "
                     f"(ordered by matched feature)", fontsize=9, loc="left")
    im = row[2].imshow(cos[:, order] if order.size else np.zeros((n, 1)), **kw)
    row[2].set_title(f"cos(W_i, d_j): {int(rec.sum())} of {int(emb.sum())} embedded "
                     f"recovered (> {fmt(summary_sae.RECOVERED_COSINE)})", fontsize=9, loc="left")
    for ax in row:
      ax.tick_params(labelsize=7)
    row[0].set_xticks(range(n) if n <= 20 else range(0, n, 5))
    row[0].set_xlabel("feature i", fontsize=8)
    row[0].set_ylabel("hidden dim", fontsize=8)
    row[1].set_xlabel("latent j", fontsize=8)
    row[2].set_xlabel("latent j", fontsize=8)
    row[2].set_ylabel("feature i", fontsize=8)
    for i in np.flatnonzero(~emb):
      row[2].axhline(i, color="0.4", linewidth=0.6, linestyle=":")
      if n <= 20:
        row[0].get_xticklabels()[i].set_color("0.6")
  fig.colorbar(im, ax=axes[:, 2].tolist(), shrink=0.6, label="value / cosine")
  return finish(fig, "True feature directions and the SAE's dictionary",
                _caption([result], mult, l1),
                ["best toy seed, best SAE seed; dotted rows: features not embedded "
                 f"(||W_i|| ≤ {fmt(summary_sae.EMBEDDED_NORM)})"])
