"""The numbers of the width-scaling experiment (Liu, Liu & Gore 2025), numpy + scipy only.

One result per hidden width m (`experiments/scaling_law.py` trains one spec per width),
each a grid of activation × density × weight decay × seed whose density carries the
data exponent a (`data.exponent_density`: `p_i ∝ i^-a`). The numbers, all in their
figures' units:

  - loss: the training loss averaged over the last `TAIL` of the steps (the cosine tail,
    lr near 5 % of its peak), per example and summed over features: the stored loss
    (their MSE, importance 1/n) divided by the importance, `n · MSE`;
  - the model exponent α_m: minus the slope of a least-squares line through
    `(log m, log loss)` over the widths, fitted per seed ("typical seed": the mean over
    seeds with a t-interval, `CONFIDENCE`) and through the best seed at each width
    ("best seed": the lowest loss found), with the fit's R²;
  - the represented fraction φ_1/2: the share of features with `‖W_i‖ > 1/2`;
  - D* = m / ‖W‖_F² (Elhage et al. 2022, §6).
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Sequence

import numpy as np

from superpos_jax import results, summary
from superpos_jax.results import SweepResult

TAIL = 0.1  # the last 10 % of the steps
REPRESENTED_NORM = 0.5  # their φ_1/2
CONFIDENCE = 0.95
STRONG, WEAK = -1.0, 1.0  # the weight decays of strong and weak superposition (theirs)


class WidthGrid(NamedTuple):
  """One part of the experiment gathered over widths; arrays `[A, D, WD, S, M]`."""

  activations: list[str]
  exponents: np.ndarray  # [D] data exponents a
  weight_decays: np.ndarray  # [WD]
  seeds: np.ndarray  # [S]
  widths: np.ndarray  # [M]
  loss: np.ndarray  # n · MSE over the last TAIL of the steps (NaN: diverged)
  represented: np.ndarray  # φ_1/2
  dstar: np.ndarray  # D*


def data_exponents(densities: np.ndarray) -> np.ndarray:
  """`a = 1/density - 1` (`data.density_exponent`), rounded off float noise."""
  return np.round(1.0 / np.asarray(densities, np.float64) - 1.0, 6)


def tail_loss(result: SweepResult, tail: float = TAIL) -> np.ndarray:
  """`[grid]`: the mean loss of the log windows in the last `tail` of the steps, per
  example and summed over features (divided by the mean importance, uniform here)."""
  steps = result.extra["history_steps"]
  keep = steps > steps[-1] * (1.0 - tail)
  history = result["loss_history"][..., keep].mean(axis=-1)
  importance = np.asarray(result.extra["importance_vectors"]).mean(axis=-1)  # [I]
  shape = [1] * history.ndim
  shape[result.axes.index("importance")] = importance.size
  return np.where(result["diverged"], np.nan, history / importance.reshape(shape))


def width_grid(by_width: Sequence[SweepResult]) -> WidthGrid:
  """Stacks one result per width (same grid otherwise) into `WidthGrid` arrays."""
  first = by_width[0]
  for r in by_width[1:]:
    for axis in ("activation", "density", "weight_decay", "seed"):
      if not np.array_equal(r.coords[axis], first.coords[axis]):
        raise ValueError(f"the widths' results differ on axis {axis!r}")

  def one(r: SweepResult):
    pick = lambda x: x[:, :, 0, 0, :, 0]  # [A, D, I, L, WD, AL, S, ...] -> [A, D, WD, S, ...]
    loss = pick(tail_loss(r))
    rep = pick((r["feature_norms"] > REPRESENTED_NORM).mean(axis=-1))
    dstar = pick(r["dims_per_feature"])
    return loss, np.where(np.isnan(loss), np.nan, rep), np.where(np.isnan(loss), np.nan, dstar)

  stacked = [np.stack(x, axis=-1) for x in zip(*map(one, by_width))]
  return WidthGrid([str(a) for a in first.coords["activation"]],
                   data_exponents(first.coords["density"]), np.asarray(first.coords["weight_decay"], float),
                   np.asarray(first.coords["seed"]), np.array([r.spec.m for r in by_width]), *stacked)


def fit_exponents(loss: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`(exponent [...], R² [...])` of `loss [..., M]` against `widths [M]` on log-log
  axes: `loss ∝ m^-exponent`; NaN where any width's loss is missing."""
  x = np.log(np.asarray(widths, np.float64))
  y = np.log(loss)
  xc = x - x.mean()
  slope = np.sum(xc * (y - y.mean(axis=-1, keepdims=True)), axis=-1) / np.sum(xc * xc)
  resid = y - y.mean(axis=-1, keepdims=True) - slope[..., None] * xc
  total = np.sum((y - y.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
  r2 = 1.0 - np.sum(resid**2, axis=-1) / np.where(total > 0, total, np.nan)
  return -slope, r2


def t_interval(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(mean, low, high)` over the last axis (seeds), Student's t; NaN seeds dropped,
  NaN bounds where fewer than two seeds are left."""
  from scipy import stats
  n = np.sum(np.isfinite(x), axis=-1)
  mean = np.nanmean(np.where(n[..., None] > 0, x, 0.0), axis=-1)
  mean = np.where(n > 0, mean, np.nan)
  sd = np.sqrt(np.nansum((x - mean[..., None]) ** 2, axis=-1) / np.maximum(n - 1, 1))
  half = stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(np.maximum(n, 1))
  half = np.where(n >= 2, half, np.nan)
  return mean, mean - half, mean + half


def exponent_table(grid: WidthGrid) -> dict[str, np.ndarray]:
  """The exponents of every (activation, a, weight decay): per seed `[A, D, WD, S]`,
  the typical seed (mean, t-interval) and the best seed `[A, D, WD]`, and the R²s."""
  per_seed, r2 = fit_exponents(grid.loss, grid.widths)
  mean, low, high = t_interval(per_seed)
  best_loss = np.nanmin(np.where(np.isfinite(grid.loss), grid.loss, np.inf), axis=-2)
  best, best_r2 = fit_exponents(np.where(np.isfinite(best_loss), best_loss, np.nan), grid.widths)
  return {"per seed": per_seed, "typical": mean, "low": low, "high": high,
          "best": best, "R2 per seed": r2, "R2 best": best_r2}


def part_summary(grid: WidthGrid, description: str, settings: dict[str, Any]) -> dict[str, Any]:
  """A part's JSON: settings, the per-width arrays and the exponents (see module doc)."""
  ex = exponent_table(grid)
  dims = "[activation, a, weight decay, seed, width]"
  out = {
      "description": description, "settings": settings,
      "activations": grid.activations, "data exponents a": grid.exponents,
      "weight decays": grid.weight_decays, "seeds": grid.seeds, "widths": grid.widths,
      f"loss {dims}": grid.loss, f"represented fraction {dims}": grid.represented,
      f"D* {dims}": grid.dstar,
  }
  dims = "[activation, a, weight decay]"
  out.update({
      f"exponent, typical seed (mean over seeds) {dims}": ex["typical"],
      f"exponent, typical seed, {CONFIDENCE:.0%} t-interval low {dims}": ex["low"],
      f"exponent, typical seed, {CONFIDENCE:.0%} t-interval high {dims}": ex["high"],
      f"exponent, best seed {dims}": ex["best"],
      f"exponent per seed {dims[:-1]}, seed]": ex["per seed"],
      f"R^2 per seed {dims[:-1]}, seed]": ex["R2 per seed"],
      f"R^2, best seed {dims}": ex["R2 best"],
  })
  return out


def read_part(part: dict[str, Any]) -> WidthGrid:
  """The `WidthGrid` of a part's JSON (what figures and docs read)."""
  dims = "[activation, a, weight decay, seed, width]"
  arr = lambda k: np.asarray(part[k], dtype=np.float64)
  return WidthGrid(part["activations"], arr("data exponents a"), arr("weight decays"),
                   np.asarray(part["seeds"]), arr("widths"), arr(f"loss {dims}"),
                   arr(f"represented fraction {dims}"), arr(f"D* {dims}"))


def exponents_of(part: dict[str, Any]) -> dict[str, np.ndarray]:
  """A part's exponents `[A, D, WD]` by kind ("typical", "low", "high", "best")."""
  dims = "[activation, a, weight decay]"
  key = {"typical": f"exponent, typical seed (mean over seeds) {dims}",
         "low": f"exponent, typical seed, {CONFIDENCE:.0%} t-interval low {dims}",
         "high": f"exponent, typical seed, {CONFIDENCE:.0%} t-interval high {dims}",
         "best": f"exponent, best seed {dims}"}
  return {k: np.asarray(part[v], dtype=np.float64) for k, v in key.items()}


def published_at(published: dict[str, Any], name: str, a: float, weight_decay: float) -> float:
  """Liu et al.'s digitised value (`figures/scaling_law_published.json`) of heatmap
  `name` at the cell nearest (a, weight decay)."""
  grid = np.asarray(published[name]["values [a, weight decay]"])
  k = int(np.argmin(np.abs(np.asarray(published["data_exponents"]) - a)))
  j = int(np.argmin(np.abs(np.asarray(published["weight_decays"]) - weight_decay)))
  return float(grid[k, j])


def comparison(part: dict[str, Any], published: dict[str, Any]) -> dict[str, Any]:
  """ReLU exponents at weight decay ±1 next to Liu et al.'s Fig. 4b cell of the same
  (a, γ), and the represented fraction at the largest width next to Fig. 3b's."""
  grid, ex = read_part(part), exponents_of(part)
  act = grid.activations.index("relu")
  out = {}
  for wd, label in ((STRONG, "strong (weight decay -1)"), (WEAK, "weak (weight decay +1)")):
    if wd not in grid.weight_decays:
      continue
    w = int(np.flatnonzero(grid.weight_decays == wd)[0])
    out[label] = {f"a = {a:g}": {
        "this run, typical seed": ex["typical"][act, d, w],
        f"this run, {CONFIDENCE:.0%} t-interval": [ex["low"][act, d, w], ex["high"][act, d, w]],
        "this run, best seed": ex["best"][act, d, w],
        "Liu et al. Fig. 4b": published_at(published, "model_exponent", a, wd)}
        for d, a in enumerate(grid.exponents)}
  rep = np.nanmean(grid.represented[act, ..., -1], axis=-1)  # [D, WD], the largest width
  out["represented fraction at the largest width vs Fig. 3b"] = {
      f"a = {a:g}, weight decay {wd:g}": {
          "this run (mean over seeds)": rep[d, w],
          "Liu et al. Fig. 3b (nearest cell)": published_at(published, "represented_fraction", a, wd)}
      for d, a in enumerate(grid.exponents) for w, wd in enumerate(grid.weight_decays)}
  return out


def save(name: str, data: dict[str, Any], folder: str) -> str:
  """Writes `data` to `<folder>/<name>_summary.json` atomically (NaN as null)."""
  text = json.dumps(summary._jsonable(data), indent=1, allow_nan=False) + "\n"
  path = os.path.join(folder, f"{name}_summary.json")
  return results.write_atomically(path, lambda f: f.write(text.encode()))


def _timings(by_width: Sequence[SweepResult]) -> dict[str, Any]:
  """Compile and run seconds per width (from each result's own metadata, so a reused
  result reports the training that made it) and what padding every width to the largest
  would cost: one compile, every width at the largest width's run time."""
  compile_s = [r.meta["timings"]["compile_s"] for r in by_width]
  run_s = [r.meta["timings"]["run_s"] for r in by_width]
  return {"compile_s per width": compile_s, "run_s per width": run_s,
          "one spec per width, total s": sum(compile_s) + sum(run_s),
          "padded to the largest width (estimate), total s": compile_s[-1] + len(by_width) * run_s[-1]}


def _settings(spec) -> dict[str, Any]:
  return {k: getattr(spec, k) for k in ("n", "steps", "batch_size", "lrs", "init", "model", "data",
                                         "optimizer", "log_every", "rng", "init_rng")}


def scaling_summary(by_part: dict[str, Sequence[SweepResult]], descriptions: dict[str, str],
                    published: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any]:
  """The experiment's JSON: each part (`part_summary`) with its timings, the ReLU
  comparison with Liu et al. (`comparison`, where their digitised numbers are given),
  and the run (wall time, machine load, per-width compile and run seconds)."""
  first = next(iter(by_part.values()))[0]
  out = {"experiment": "scaling_law", "units and definitions": __doc__.split("\n\n", 1)[1].strip(),
         "run": dict(run, env=first.meta.get("env", {})), "parts": {}}
  for part, by_width in by_part.items():
    entry = part_summary(width_grid(by_width), descriptions.get(part, ""), _settings(by_width[0].spec))
    entry["timings"] = _timings(by_width)
    out["parts"][part] = entry
  out["run"]["training s (compile + run, every spec)"] = sum(
      p["timings"]["one spec per width, total s"] for p in out["parts"].values())
  if published is not None:
    out["published heatmaps"] = {k: published[k] for k in (
        "source", "how", "weight_decays", "data_exponents", "model_exponent", "represented_fraction")}
    if "relu" in out["parts"]:
      out["comparison with Liu et al."] = comparison(out["parts"]["relu"], published)
  return out
