"""The numbers of the "beyond the study" experiments, from `SweepResult`s (numpy only).

Each function on weights works on any leading axes; each one on a result answers for the
best seed (lowest eval loss) at every (activation, density) of the result's first
importance, lr, weight decay and init scale unless a selection is made first (or a
`seed_rule` asks for the typical seed: every healthy (point, seed) counted), and gives
NaN where that seed diverged. The thresholds are plain and stated in every summary
(SCIENCE.md, "Beyond the study"):

  - a neuron k carries feature i when `|W_ki| > NEURON_WEIGHT` (features per neuron, TMS
    "Superposition in a privileged basis"; embedded features have ‖W_i‖ ≈ 1, so 0.5 means
    "a good share of the feature goes through this neuron");
  - a pair (2k, 2k+1) counts for the pair cosine when both `‖W_i‖ > PAIR_NORM`;
  - an `abs`-model feature i is computed when, with only x_i present, output i explains
    more than half of the variance of |x_i| over x_i in [-1, 1] (`R² > COMPUTED_R2`).
    Weight norms cannot say it: at n = 20, m = 10 the Xavier init already gives every
    column of W₁ and row of W₂ a norm ≈ 0.8, and the answer depends on the activation.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from superpos_jax import results, summary
from superpos_jax.results import SweepResult

NEURON_WEIGHT = 0.5
PAIR_NORM = 0.5
COMPUTED_R2 = 0.5
PROBE_VALUES = np.linspace(-1.0, 1.0, 201)  # the values x_i of `probes.isolated_outputs`
BEST = summary.SEED_LABELS["best"]


def features_per_neuron(W: np.ndarray, threshold: float = NEURON_WEIGHT) -> np.ndarray:
  """`W [..., m, n] -> [..., m]`: per neuron k, the features i with `|W_ki| > threshold`."""
  return (np.abs(W) > threshold).sum(axis=-1)


def pair_cosines(W: np.ndarray, min_norm: float = PAIR_NORM) -> np.ndarray:
  """`W [..., m, n] -> [..., n // 2]`: cosine between the columns W_{2k} and W_{2k+1}.

  NaN for a pair unless both columns have norm above `min_norm` (a pair that is not
  embedded has no direction to compare). TMS (ReLU): ≈ 0 for correlated pairs
  (orthogonal), ≈ −1 for anticorrelated ones (antipodal).
  """
  a, b = W[..., 0::2], W[..., 1::2]
  na, nb = np.linalg.norm(a, axis=-2), np.linalg.norm(b, axis=-2)
  ok = (na > min_norm) & (nb > min_norm)
  cos = np.sum(a * b, axis=-2) / np.where(ok, na * nb, 1.0)
  return np.where(ok, cos, np.nan)


def mean_pair_cosine(W: np.ndarray, min_norm: float = PAIR_NORM) -> tuple[np.ndarray, np.ndarray]:
  """`W [..., m, n] -> ([...], [...])`: the mean of `pair_cosines` over the embedded
  pairs (NaN when none is) and how many pairs were embedded."""
  cos = pair_cosines(W, min_norm)
  count = np.sum(np.isfinite(cos), axis=-1)
  total = np.nansum(cos, axis=-1)
  return np.where(count > 0, total / np.maximum(count, 1), np.nan), count


def computed_from_outputs(outputs: np.ndarray, values: np.ndarray = PROBE_VALUES,
                          threshold: float = COMPUTED_R2) -> tuple[np.ndarray, np.ndarray]:
  """Which features an `abs` model computes, from its isolated outputs.

  Args:
    outputs: `[..., n, T]` output i when only feature i is present with value `values[t]`
      (`probes.isolated_outputs`).
    values: `[T]` the probed values, spread over [-1, 1].
    threshold: the R² above which a feature counts as computed.

  Returns:
    `([..., n], [...])`: per feature `R² = 1 − mean_t (y_i(t) − |t|)² / var_t |t|` (1:
    exact |x_i|; 0: no better than the best constant; ReLU(x_i) alone, half of the
    job, gives −1; a constant output b_i ≈ mean |x_i| gives ≈ 0) and the count of
    features with R² > `threshold`. NaN outputs (a diverged model) give NaN and are
    not counted.
  """
  target = np.abs(values)
  err = np.mean(np.square(outputs - target), axis=-1)
  r2 = 1.0 - err / np.var(target)
  return r2, np.sum(r2 > threshold, axis=-1)


def best_grid(result: SweepResult) -> SweepResult:
  """The result at the first value of every axis but activation and density, its seeds
  reduced to the best one: arrays `[A, D, ...]`."""
  fixed = {a: result.coords[a][0] for a in ("importance", "lr", "weight_decay", "init_scale")
           if a in result.coords}
  res = result.sel(**fixed) if fixed else result
  return res.reduce_seeds("best") if "seed" in res.coords else res


def _healthy(red: SweepResult, values: np.ndarray) -> np.ndarray:
  return np.where(red["diverged"], np.nan, np.asarray(values, np.float64))


def neuron_statistics(result: SweepResult, threshold: float = NEURON_WEIGHT):
  """`([A, D], [A, D])`: mean features per neuron and the fraction of polysemantic
  neurons (carrying at least 2 features) of the best seed."""
  red = best_grid(result)
  counts = features_per_neuron(red["W"], threshold)
  return _healthy(red, counts.mean(-1)), _healthy(red, (counts >= 2).mean(-1))


def pair_cosine_grid(result: SweepResult, min_norm: float = PAIR_NORM):
  """`([A, D], [A, D])`: mean pair cosine and embedded pairs of the best seed."""
  red = best_grid(result)
  cos, count = mean_pair_cosine(red["W"], min_norm)
  return _healthy(red, cos), _healthy(red, count)


def _by_act(result: SweepResult, values: Any) -> dict[str, Any]:
  return dict(zip(result.coords["activation"].tolist(), values))


def _header(name: str, result: SweepResult) -> dict[str, Any]:
  return summary._header(name, result)


def superposition_by_scale(n2: SweepResult, seed_rule: str = "best") -> np.ndarray:
  """`[A, α]`: the n = 2 fraction of points in superposition at density < 0.1
  (`summary.superposition_fraction`: "best" seed, or "per_seed", every healthy seed a
  case) at each init scale."""
  return np.stack([summary.superposition_fraction(n2.sel(init_scale=a), seed_rule=seed_rule)[:, 0]
                   for a in n2.coords["init_scale"]], axis=1)


def closed_form_by_scale(n2: SweepResult, seed_rule: str = "best") -> dict[str, float]:
  """Per init scale: the fraction of n = 2 ReLU cases in the closed-form phase
  (`summary.closed_form_agreement`, all points)."""
  return {f"{a:g}": summary.closed_form_agreement(n2.sel(init_scale=a), seed_rule)["all"]
          for a in n2.coords["init_scale"]}


def dstar_by_scale(n200: SweepResult) -> np.ndarray:
  """`[A, α, 2]`: D* at the densest and the sparsest density (best seed, first importance
  and lr, `summary.dstar_ends`) at each init scale."""
  out = []
  for a in n200.coords["init_scale"]:
    dstar = summary.dstar_ends(n200.sel(init_scale=a)).dstar  # [A, 2, I, L]
    out.append(dstar.reshape(*dstar.shape[:2], -1)[..., 0])
  return np.stack(out, axis=1)


def init_scale_summary(n2: SweepResult, n200: SweepResult,
                       n2_long: SweepResult | None = None) -> dict[str, Any]:
  """Per init scale α and activation: the n = 2 superposition fraction at density < 0.1
  (best and typical seed), ReLU's agreement with the closed form, the n = 200 D* at
  the densest and the sparsest density (best seed), and how far each part is from
  converged (`summary.convergence`: a large init takes longer to shrink). `n2_long`: the
  n = 2 grid at one α trained longer; the same n = 2 numbers and convergence for it."""
  dstar = dstar_by_scale(n200)
  d = n200.coords["density"]
  scales = n200.coords["init_scale"]
  band = f"density < {summary.DENSITY_EDGES[0]}"
  out = {"experiment": "init_scale", "n2": _header("init_scale-n2", n2),
         "n200": _header("init_scale-n200", n200),
         "seed_rule": f"{BEST} unless a key names another"}
  for rule in summary.RULES:
    label = "" if rule == "best" else f", {summary.SEED_LABELS[rule]}"
    sup = superposition_by_scale(n2, rule)
    out[f"superposition fraction, {band}, by init scale{label}"] = {
        f"{a:g}": _by_act(n2, sup[:, i]) for i, a in enumerate(n2.coords["init_scale"])}
  if "relu" in n2.coords["activation"]:
    out["relu closed-form agreement by init scale"] = {
        summary.SEED_LABELS[rule]: closed_form_by_scale(n2, rule) for rule in summary.RULES}
  out["dims_per_feature (densest, sparsest) by init scale"] = {
      f"{a:g}": _by_act(n200, dstar[:, i]) for i, a in enumerate(scales)}
  out["densities (densest, sparsest)"] = [d.max(), d.min()]
  for part, res in (("n2", n2), ("n200", n200)):
    conv = {f"{a:g}": summary.convergence(res.sel(init_scale=a)) for a in res.coords["init_scale"]}
    first = next(iter(conv.values()))
    out[f"{part} convergence: median |relative loss change| by init scale"] = {
        "seed_rule": "every seed", "from_step": first.from_step,
        "to_step": int(res.extra["history_steps"][-1]),
        **{a: _by_act(res, c.median) for a, c in conv.items()}}
  if n2_long is not None:
    (alpha,) = n2_long.coords["init_scale"]
    conv = summary.convergence(n2_long)
    long = {"run": _header("init_scale-n2-long", n2_long)}
    for rule in summary.RULES:
      sup = superposition_by_scale(n2_long, rule)[:, 0]
      long[f"superposition fraction, {band}, {summary.SEED_LABELS[rule]}"] = _by_act(n2_long, sup)
    if "relu" in n2_long.coords["activation"]:
      long["relu closed-form agreement"] = {
          summary.SEED_LABELS[rule]: closed_form_by_scale(n2_long, rule)[f"{alpha:g}"]
          for rule in summary.RULES}
    long["convergence: median |relative loss change|"] = {
        "seed_rule": "every seed", "from_step": conv.from_step,
        "to_step": int(n2_long.extra["history_steps"][-1]), **_by_act(n2_long, conv.median)}
    out[f"n2 at init scale {alpha:g}, {n2_long.spec.steps} steps"] = long
  return out


def privileged_summary(result: SweepResult) -> dict[str, Any]:
  """Features per neuron and polysemantic neurons per activation and density."""
  mean, poly = neuron_statistics(result)
  embedded = summary.embedded_features(result).reshape(*mean.shape, -1)[..., 0]
  return {**_header("privileged_basis", result), "seed_rule": BEST,
          "neuron carries feature i": f"|W_ki| > {NEURON_WEIGHT}",
          "mean features per neuron": _by_act(result, mean),
          "fraction of neurons with >= 2 features": _by_act(result, poly),
          f"embedded features, ||W_i|| > {summary.EMBEDDED_NORM}": _by_act(result, embedded)}


def correlated_summary(correlated: SweepResult, anticorrelated: SweepResult) -> dict[str, Any]:
  """Mean cosine between a pair's columns, correlated vs anticorrelated pairs."""
  out = {"experiment": "correlated_features", "seed_rule": BEST,
         "pair counted when": f"both ||W_i|| > {PAIR_NORM}",
         "expected for ReLU (TMS)": {"correlated": "about 0 (orthogonal)",
                                     "anticorrelated": "about -1 (antipodal)"}}
  for name, res in (("correlated", correlated), ("anticorrelated", anticorrelated)):
    cos, count = pair_cosine_grid(res)
    with np.errstate(invalid="ignore"):
      overall = [np.nanmean(c) if np.isfinite(c).any() else np.nan for c in cos]
    out[name] = {**_header(f"correlated_features-{name}", res),
                 "mean pair cosine": _by_act(res, cos),
                 "embedded pairs": _by_act(res, count),
                 "mean pair cosine over densities": _by_act(res, overall)}
  return out


def computation_summary(result: SweepResult, outputs: np.ndarray) -> dict[str, Any]:
  """Computed features and eval loss of the `abs` model per activation and density.

  Args:
    result: an `abs`-model result.
    outputs: `[A, D, n, T]` isolated outputs of `best_grid(result)` at `PROBE_VALUES`.
  """
  red = best_grid(result)
  r2, count = computed_from_outputs(outputs)
  return {**_header("computation", result), "seed_rule": BEST,
          "feature i computed when": f"R^2 of output i vs |x_i| > {COMPUTED_R2}, only x_i "
                                    f"present, x_i on {len(PROBE_VALUES)} points of [-1, 1]",
          "computed features": _by_act(result, _healthy(red, count)),
          "R^2 per feature": _by_act(result, np.where(red["diverged"][..., None], np.nan, r2)),
          "eval loss": _by_act(result, _healthy(red, red["eval_loss"]))}


def dstar_variant(densities: Any, dstar: Any, **about: Any) -> dict[str, Any]:
  """One D* curve as a summary entry: `about` (what the variant is), then D* at the
  densest and the sparsest density and along the curve (densities ascending)."""
  d, y = np.asarray(densities, np.float64), np.asarray(dstar, np.float64)
  order = np.argsort(d)
  return {**about, "dstar_densest": y[np.argmax(d)], "dstar_sparsest": y[np.argmin(d)],
          "densities": d[order], "dims_per_feature": y[order]}


def solu_instances_summary(definition: SweepResult, coupled: dict[str, dict[str, Any]],
                           study: dict[str, Any]) -> dict[str, Any]:
  """SoLU's D* at n = 200: the definition (softmax over features) and the instance-softmax
  runs, each at both ends and along the curve.

  Args:
    definition: the engine's result with a "solu" activation (one seed).
    coupled: label -> `dstar_variant(...)` of each instance-batched run.
    study: what is read off the study's figure (stated as such in the JSON).
  """
  red = best_grid(definition.sel(activation="solu"))
  own = dstar_variant(red.coords["density"], _healthy(red, red["dims_per_feature"]),
                      description="softmax over the n features of an example (the "
                                  "definition; the engine's solu)", instances=None,
                      init=definition.spec.init)
  return {**_header("solu_instances", definition), "seed_rule": BEST,
          "study (read off its figure, not computed)": study,
          "variants": {"solu (definition)": own, **coupled}}


def gram_interference(W: np.ndarray) -> np.ndarray:
  """`W [..., m, n] -> [...]`: mean |(WᵀW)_ij| over i ≠ j, the off-diagonal of the
  Gram matrix as the WᵀW figures draw it (the "speckle")."""
  gram = np.einsum("...ki,...kj->...ij", W, W)
  n = gram.shape[-1]
  off = ~np.eye(n, dtype=bool)
  return np.abs(gram[..., off]).mean(axis=-1)


def phase_agreement(a: SweepResult, b: SweepResult) -> dict[str, Any]:
  """How often two n = 2 results of the same grid land in the same phase, per activation:
  the best seed at each point, and every (point, seed) pair ("typical seed")."""
  pa, pb = summary.first_setting(a), summary.first_setting(b)
  ok = ~(pa["diverged"] | pb["diverged"])
  same = np.where(ok, pa["phase"] == pb["phase"], np.nan)
  ra, rb = pa.reduce_seeds("best"), pb.reduce_seeds("best")
  best = np.where(~(ra["diverged"] | rb["diverged"]), ra["phase"] == rb["phase"], np.nan)
  mean = lambda x: [np.nanmean(v) for v in x.reshape(x.shape[0], -1)]
  return {BEST: _by_act(pa, mean(best)), summary.SEED_LABELS[summary.PER_SEED]: _by_act(pa, mean(same))}


def training_length_summary(name: str, runs: dict[str, SweepResult]) -> dict[str, Any]:
  """The same grid trained for different step counts: each run's standard summary
  (`summary.experiment_summary(name, ...)`), n = 10's WᵀW off-diagonal (best seed) and,
  for n = 2, how often the runs agree on the phase with the first (shortest) run."""
  out = {}
  first = next(iter(runs.values()))
  for label, res in runs.items():
    entry = summary.experiment_summary(name, res)
    if res.spec.n > 2:
      red = best_grid(res)
      entry["mean |off-diagonal (W^T W)_ij|, best seed"] = _by_act(
          res, _healthy(red, gram_interference(red["W"])))
    elif res is not first:
      entry[f"same phase as the {first.spec.steps}-step run"] = phase_agreement(first, res)
    out[label] = entry
  return out


def save(name: str, data: dict[str, Any], folder: str) -> str:
  """Writes `data` (a summary above) to `<folder>/<name>_summary.json` atomically."""
  text = json.dumps(summary._jsonable(data), indent=2, allow_nan=False) + "\n"
  path = os.path.join(folder, f"{name}_summary.json")
  return results.write_atomically(path, lambda f: f.write(text.encode()))
