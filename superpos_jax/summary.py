"""The numbers the README quotes, computed from a `SweepResult` (numpy only).

Each experiment script writes `experiment_summary(name, result)` as
`<figures>/<name>_summary.json` beside its figures (`save`), so that every sentence about
results can be traced to a file that code wrote. Two ways of collapsing the seeds answer
two questions (SCIENCE.md, "Basin statistics"); every number says which it answers:

  - "best seed" (`seed_rule="best"`): at each point the seed of lowest evaluation loss,
    what the optimum looks like;
  - "typical seed" (`seed_rule="per_seed"`): every (point, seed) pair counted alike,
    what training usually finds.

Diverged models are left out of every fraction and statistic (the counts say how many
were counted); a value with nothing to count is NaN, `null` in the JSON.
"""

# long file: every number the README and docs/results.md quote about the study, one
# function per claim, kept beside each other so that the claims read as a list.

from __future__ import annotations

import functools
import json
import math
import os
import warnings
from typing import Any, Callable, NamedTuple

import numpy as np

from superpos_jax import results, theory
from superpos_jax.phases import BOTH, PHASES
from superpos_jax.results import SweepResult

PER_SEED = "per_seed"
SEED_LABELS = {"best": "best seed", PER_SEED: "typical seed",
               "trimmed_mean": "trimmed mean over seeds"}
# Density bands of the superposition fractions: 1-S < 0.1 is where the study says ReLU's
# superposition dominates; >= 0.3 are the dense points.
DENSITY_EDGES = (0.1, 0.3)
# A ReLU point is "far from a boundary" when its best two closed-form losses differ by
# more than this fraction of the best (a cell on a boundary may go either way).
FAR_MARGIN = 0.1
# ‖W_i‖ above which a feature counts as embedded (embedded features have ‖W_i‖ ≈ 1).
EMBEDDED_NORM = 0.5
# D_i above which a feature counts as embedded where norms are not ≈ 1 (sigmoid, SoLU):
# half of m/n = 0.1, what every feature gets from a projection spread over all of them.
EMBEDDED_DIMENSIONALITY = 0.05
CONVERGENCE_TAIL = 0.2  # the last 20 % of the steps
# |D_i - 1/2| below this: feature i is one of an antipodal pair (TMS's sticky 1/2).
ANTIPODAL_TOL = 0.02


def first_setting(result: SweepResult) -> SweepResult:
  """`result` at the first weight decay and init scale (the study's single setting): the
  summaries describe one optimiser setting; select another with `result.sel` first."""
  fixed = {a: result.coords[a][0] for a in ("weight_decay", "init_scale") if a in result.coords}
  return result.sel(**fixed) if fixed else result


def _one_setting(fn: Callable) -> Callable:
  """`fn(result, ...)` applied to `first_setting(result)`."""
  @functools.wraps(fn)
  def wrapped(result: SweepResult, *args, **kwargs):
    return fn(first_setting(result), *args, **kwargs)
  return wrapped


def _along(result: SweepResult, axis: str, drop: str = "") -> np.ndarray:
  """Coordinates of `axis`, shaped to broadcast against the grid axes (less `drop`)."""
  axes = [a for a in result.axes if a != drop]
  return np.reshape(result.coords[axis], [-1 if a == axis else 1 for a in axes])


def _collapse(result: SweepResult, seed_rule: str) -> SweepResult:
  """The result with its seeds reduced by `seed_rule`, or kept for "per_seed"."""
  if seed_rule == PER_SEED or "seed" not in result.coords:
    return result
  return result.reduce_seeds(seed_rule)


def _quiet(fn: Callable[..., np.ndarray], *args, **kwargs) -> np.ndarray:
  """`fn` without numpy's warnings for empty or all-NaN slices (they give NaN, as meant)."""
  with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)
    return fn(*args, **kwargs)


def _per_activation(fn: Callable[..., np.ndarray], x: np.ndarray, **kwargs) -> np.ndarray:
  """`fn` over every axis but the first (activation): `[A, ...] -> [A]`."""
  return _quiet(fn, x.reshape(x.shape[0], -1), axis=1, **kwargs)


class Basins(NamedTuple):
  """Where the seeds of each grid point land (grid axes less seed: `[A, D, I, L]`)."""

  phase_fraction: np.ndarray | None  # [A, D, I, L, len(PHASES)]; None unless n = 2
  loss_gap: np.ndarray  # [A, D, I, L] (median − best) / best eval loss
  seeds: np.ndarray  # [A, D, I, L] seeds that did not diverge (the denominators)


@_one_setting
def basin_statistics(result: SweepResult) -> Basins:
  """Per grid point: the fraction of seeds in each phase and the best-to-median loss gap.

  Args:
    result: a result with a seed axis; phase fractions need its n = 2 `phase` array.

  Returns:
    `Basins`: `phase_fraction [..., len(PHASES)]` (fractions of the healthy seeds,
    summing to 1), `loss_gap [...]` = `(median − best) / best` of the healthy seeds'
    eval losses (the median of an even count is the mean of the middle two) and
    `seeds [...]`, the healthy seed counts. NaN where every seed diverged.
  """
  if "seed" not in result.coords:
    raise ValueError("basin statistics need a seed axis")
  ax = result.axes.index("seed")
  healthy = ~result["diverged"]
  seeds = healthy.sum(ax)
  phase_fraction = None
  if "phase" in result.data:
    counts = [((result["phase"] == p) & healthy).sum(ax) for p in range(len(PHASES))]
    phase_fraction = _quiet(np.divide, np.stack(counts, axis=-1), seeds[..., None])
  loss = np.where(healthy, result["eval_loss"], np.nan)
  best = _quiet(np.nanmin, loss, axis=ax)
  loss_gap = _quiet(np.divide, _quiet(np.nanmedian, loss, axis=ax) - best, best)
  return Basins(phase_fraction, loss_gap, seeds)


@_one_setting
def closed_form_agreement(result: SweepResult, seed_rule: str = "best",
                          margin: float = FAR_MARGIN) -> dict[str, Any]:
  """How often the trained n = 2 ReLU phase is the closed-form one (`theory`).

  Args:
    result: an n = 2 result with importance_kind "relative" and a "relu" activation.
    seed_rule: "best", "per_seed" (every healthy seed a case) or "trimmed_mean".
    margin: a point is far from a boundary when its second-best closed-form loss
      exceeds the best by more than `margin` times the best.

  Returns:
    `{"all", "far_from_boundary"}`: fractions of agreeing cases; `{"points",
    "points_far"}`: the healthy cases counted; `"diverged"`: the cases left out.
  """
  if result.spec.importance_kind != "relative":
    raise ValueError("the closed form needs importance_kind='relative' (I = [1, r])")
  relu = _collapse(result.sel(activation="relu"), seed_rule)
  density, r = _along(relu, "density"), _along(relu, "importance")
  losses = np.sort(theory.relu_closed_form_losses(density, r), axis=-1)
  healthy = ~relu["diverged"]
  far = np.broadcast_to(losses[..., 1] - losses[..., 0] > margin * losses[..., 0],
                        healthy.shape) & healthy
  agree = (relu["phase"] == theory.relu_closed_form_phase(density, r)) & healthy
  return {"all": _quiet(np.divide, agree.sum(), healthy.sum()),
          "far_from_boundary": _quiet(np.divide, (agree & far).sum(), far.sum()),
          "points": int(healthy.sum()), "points_far": int(far.sum()),
          "diverged": int((~healthy).sum()), "margin": margin}


def density_bands(edges: tuple[float, ...] = DENSITY_EDGES) -> list[str]:
  """Names of the density bands cut at `edges` (increasing), as `phase_fractions` orders them."""
  bounds = [None, *edges, None]
  return [("" if lo is None else f"{lo} <= ") + "density" + ("" if hi is None else f" < {hi}")
          for lo, hi in zip(bounds[:-1], bounds[1:])]


@_one_setting
def phase_fractions(result: SweepResult, edges: tuple[float, ...] = DENSITY_EDGES,
                    seed_rule: str = "best") -> np.ndarray:
  """Per activation and density band, the fraction of healthy cases in each n = 2 phase.

  Args:
    result: an n = 2 result with the activation axis first.
    edges: increasing densities cutting the bands `density < e_0`, `e_0 <= density <
      e_1`, ..., `density >= e_last` (`density_bands` names them).
    seed_rule: "best" (one case per point), "per_seed" (one per healthy seed and point)
      or "trimmed_mean".

  Returns:
    `[A, len(edges) + 1, len(PHASES)]` fractions; NaN for a band without points.
  """
  r = _collapse(result, seed_rule)
  healthy = ~r["diverged"]
  band = np.broadcast_to(np.digitize(_along(r, "density"), edges), healthy.shape)
  out = np.empty((healthy.shape[0], len(edges) + 1, len(PHASES)))
  for k in range(len(edges) + 1):
    cases = healthy & (band == k)
    count = _per_activation(np.sum, cases)
    for p in range(len(PHASES)):
      out[:, k, p] = _quiet(np.divide, _per_activation(np.sum, cases & (r["phase"] == p)), count)
  return out


@_one_setting
def superposition_fraction(result: SweepResult, edges: tuple[float, ...] = DENSITY_EDGES,
                           seed_rule: str = "best") -> np.ndarray:
  """`[A, len(edges) + 1]`: the fraction of points in superposition per density band
  (`phase_fractions` in the "superposition" phase)."""
  return phase_fractions(result, edges, seed_rule)[..., BOTH]


@_one_setting
def embedded_features(result: SweepResult, threshold: float = EMBEDDED_NORM,
                      measure: str = "feature_norms") -> np.ndarray:
  """Features the best seed embeds: the count with `measure` above `threshold`.

  Args:
    result: any result.
    threshold: `EMBEDDED_NORM` for ‖W_i‖; `EMBEDDED_DIMENSIONALITY` for D_i.
    measure: "feature_norms" (‖W_i‖) or "feature_dimensionality" (D_i, which does not
      assume ‖W_i‖ ≈ 1).

  Returns:
    Counts `[A, D, I, L]` (grid axes less seed), NaN where the best seed diverged.
  """
  r = _collapse(result, "best")
  count = (r[measure] > threshold).sum(axis=-1).astype(np.float64)
  return np.where(r["diverged"], np.nan, count)


class DStarEnds(NamedTuple):
  """D* at the densest and the sparsest density of the grid (best seed)."""

  densities: np.ndarray  # [2] the densest, then the sparsest density
  dstar: np.ndarray  # [A, 2, I, L] D* = m / ‖W‖_F² (Elhage et al. 2022, §6)
  frobenius_sq: np.ndarray  # [A, 2, I, L] ‖W‖_F² (D* counts features only if ‖W_i‖ ≈ 1)


@_one_setting
def dstar_ends(result: SweepResult) -> DStarEnds:
  """D* and ‖W‖_F² of the best seed at both ends of the density axis."""
  r = _collapse(result, "best")
  d = r.coords["density"]
  ends = [int(np.argmax(d)), int(np.argmin(d))]
  ax = r.axes.index("density")
  return DStarEnds(d[ends], np.take(r["dims_per_feature"], ends, axis=ax),
                   np.take(np.sum(np.square(r["W"]), axis=(-2, -1)), ends, axis=ax))


class Convergence(NamedTuple):
  """The relative change of the training loss over the last steps."""

  from_step: int  # the history window end the change is measured from
  change: np.ndarray  # grid: (L(from_step) − L(end)) / L(end); > 0 while the loss falls
  median: np.ndarray  # [A] median |change| over the healthy models of each activation
  max: np.ndarray  # [A] largest |change|


@_one_setting
def convergence(result: SweepResult, tail: float = CONVERGENCE_TAIL) -> Convergence:
  """Relative loss change over the last `tail` of the steps, from the loss history.

  The start is the history window whose end step is nearest to `(1 - tail)` of the
  steps; the losses are the mean training losses of the windows (`loss_history`).

  Args:
    result: any result with the activation axis first.
    tail: the fraction of the steps at the end.

  Returns:
    `Convergence` with the per-model change (every seed) and its per-activation median
    and maximum of the absolute value (diverged models left out).
  """
  steps = np.asarray(result.extra["history_steps"])
  start = int(np.argmin(np.abs(steps - (1 - tail) * steps[-1])))
  history = result["loss_history"]
  change = _quiet(np.divide, history[..., start] - history[..., -1], history[..., -1])
  size = np.where(result["diverged"], np.nan, np.abs(change))
  return Convergence(int(steps[start]), change, _per_activation(np.nanmedian, size),
                     _per_activation(np.nanmax, size))


# What each experiment's summary holds. "Typical seed" numbers pool every (point, seed).
RULES = ("best", PER_SEED)


def _settings_squeezed(x: np.ndarray) -> np.ndarray:
  """`[K, I, L] -> [K]` when the importance and lr axes have one value, else `[K, I*L]`."""
  x = x.reshape(x.shape[0], -1)
  return x[:, 0] if x.shape[1] == 1 else x


def _by_activation(result: SweepResult, values: np.ndarray) -> dict[str, Any]:
  return dict(zip(result.coords["activation"].tolist(), values))


def _header(name: str, result: SweepResult) -> dict[str, Any]:
  spec = result.spec
  return {"experiment": name, "n": spec.n, "m": spec.m, "steps": spec.steps,
          "seeds": len(spec.seeds), "batch_size": spec.batch_size, "lrs": list(spec.lrs),
          "weight_decays": list(spec.weight_decays), "init_scales": list(spec.init_scales),
          "init": spec.init, "model": spec.model, "data": spec.data,
          "rng": spec.to_dict().get("rng"), "importances": list(spec.importances),
          "activations": result.coords["activation"].tolist(),
          "densities": result.coords["density"],
          "seed_rules": {SEED_LABELS["best"]: "at each point the seed of lowest eval loss",
                         SEED_LABELS[PER_SEED]: "every (point, seed) pair counted alike"}}


def _phase_section(result: SweepResult) -> dict[str, Any]:
  """n = 2: closed-form agreement, superposition by density band, basin statistics."""
  out = {}
  if "relu" in result.coords["activation"] and result.spec.importance_kind == "relative":
    out["closed_form_agreement"] = {SEED_LABELS[rule]: closed_form_agreement(result, rule)
                                    for rule in RULES}
  out["superposition_fraction"] = {"bands": density_bands(), **{
      SEED_LABELS[rule]: _by_activation(result, superposition_fraction(result, seed_rule=rule))
      for rule in RULES}}
  every_density = phase_fractions(result, edges=(), seed_rule="best")[:, 0]
  out["phase_fraction"] = {"seed_rule": SEED_LABELS["best"], "all densities": _by_activation(
      result, [dict(zip(PHASES, f)) for f in every_density])}
  basins = basin_statistics(result)
  sparse = _along(result, "density", drop="seed") < DENSITY_EDGES[0]
  p_sparse = np.where(sparse, basins.phase_fraction[..., BOTH], np.nan)
  split = np.where(basins.seeds > 0, basins.phase_fraction.max(axis=-1) < 1, np.nan)
  out["basins"] = {
      "seeds_per_point": len(result.coords["seed"]),
      f"mean fraction of seeds in superposition, density < {DENSITY_EDGES[0]}":
          _by_activation(result, _per_activation(np.nanmean, p_sparse)),
      "median loss gap (median seed - best seed) / best seed":
          _by_activation(result, _per_activation(np.nanmedian, basins.loss_gap)),
      "fraction of points whose seeds disagree on the phase":
          _by_activation(result, _per_activation(np.nanmean, split)),
  }
  return out


def _embedding_section(result: SweepResult) -> dict[str, Any]:
  """n = 10: features embedded (‖W_i‖ > 0.5) per activation and density."""
  counts = embedded_features(result)
  return {"embedded_features": {
      "seed_rule": SEED_LABELS["best"], "rule": f"||W_i|| > {EMBEDDED_NORM}",
      "per_density": _by_activation(result, [_settings_squeezed(c) for c in counts])}}


def _dstar_section(result: SweepResult) -> dict[str, Any]:
  """n = 200: D*, ‖W‖_F² and the embedded features at the densest and sparsest points."""
  ends = dstar_ends(result)
  at = [result.index("density", d) for d in ends.densities]
  by_norm = embedded_features(result)[:, at]
  by_dim = embedded_features(result, EMBEDDED_DIMENSIONALITY, "feature_dimensionality")[:, at]
  return {"dstar_ends": {
      "seed_rule": SEED_LABELS["best"], "densities (densest, sparsest)": ends.densities,
      "dims_per_feature": _by_activation(result, [_settings_squeezed(x) for x in ends.dstar]),
      "frobenius_sq": _by_activation(result, [_settings_squeezed(x) for x in ends.frobenius_sq]),
      f"embedded features, ||W_i|| > {EMBEDDED_NORM}":
          _by_activation(result, [_settings_squeezed(x) for x in by_norm]),
      f"embedded features, D_i > {EMBEDDED_DIMENSIONALITY}":
          _by_activation(result, [_settings_squeezed(x) for x in by_dim])},
      "curves": _dstar_curves(result)}


def _dstar_curves(result: SweepResult) -> dict[str, Any]:
  """D* at every density (ascending), and the fraction of features in antipodal pairs."""
  red = _collapse(first_setting(result), "best")
  order = np.argsort(red.coords["density"])
  pairs = np.mean(np.abs(red["feature_dimensionality"] - 0.5) < ANTIPODAL_TOL, axis=-1)
  return {"seed_rule": SEED_LABELS["best"],
          "densities": red.coords["density"][order].tolist(),
          "dims_per_feature": _by_activation(
              result, [_settings_squeezed(x[order]) for x in red["dims_per_feature"]]),
          f"fraction of features with |D_i - 1/2| < {ANTIPODAL_TOL}": _by_activation(
              result, [_settings_squeezed(x[order]) for x in pairs])}


def _convergence_section(result: SweepResult) -> dict[str, Any]:
  c = convergence(result)
  return {"convergence": {
      "seed_rule": "every seed", "from_step": c.from_step,
      "to_step": int(result.extra["history_steps"][-1]),
      "median |relative loss change|": _by_activation(result, c.median),
      "max |relative loss change|": _by_activation(result, c.max)}}


SECTIONS = {
    "phase_diagram": (_phase_section, _convergence_section),
    "feature_matrices": (_embedding_section, _convergence_section),
    "dims_per_feature": (_dstar_section, _convergence_section),
}


def _jsonable(x: Any) -> Any:
  """Plain JSON types: arrays to lists, floats to 6 significant digits, NaN to None."""
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, (int, np.integer)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(f"{x:.6g}") if math.isfinite(x) else None
  return x


def experiment_summary(name: str, result: SweepResult) -> dict[str, Any]:
  """The summary an experiment writes beside its figures (JSON-able).

  Args:
    name: the experiment ("phase_diagram", "feature_matrices", "dims_per_feature"); it
      picks the sections (`SECTIONS`).
    result: its result.

  Returns:
    A dict of plain JSON types: the settings (steps, seeds, ...), then each section,
    every number labelled with the seed rule it is about. NaN becomes None.
  """
  if name not in SECTIONS:
    raise ValueError(f"no summary for experiment {name!r}; known: {', '.join(SECTIONS)}")
  out = _header(name, result)
  for section in SECTIONS[name]:
    out.update(section(first_setting(result)))
  return _jsonable(out)


def save(name: str, result: SweepResult, folder: str) -> str:
  """Writes `experiment_summary(name, result)` to `<folder>/<name>_summary.json`
  atomically; returns the path."""
  text = json.dumps(experiment_summary(name, result), indent=2, allow_nan=False) + "\n"
  path = os.path.join(folder, f"{name}_summary.json")
  return results.write_atomically(path, lambda f: f.write(text.encode()))
