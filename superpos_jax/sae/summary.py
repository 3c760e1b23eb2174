"""The numbers of the SAE recovery experiment, from `SAEResult`s (numpy only).

Per SAE (one toy model, one dictionary multiple, L1 coefficient and SAE seed), counted
over the toy model's *embedded* features only (`‖W_i‖ > EMBEDDED_NORM`, the rule of the
other summaries; how many there are is reported beside every recovery number, since an
activation that embeds fewer features is not more interpretable for that alone):

  - MMCS: the mean over embedded features i of `max_j cos(W_i, d_j)`, j over the live
    latents (`sae.max_cosine`);
  - recovered: embedded features with that maximum above `RECOVERED_COSINE`;
  - dead latents: never active on the evaluation set; dense: active on more than
    `DENSE_FREQUENCY` of its examples (at density 1 every true feature is that dense);
  - reconstruction error `Σ‖h − ĥ‖² / Σ‖h‖²` and L0 (mean active latents per example,
    against the true L0 = n · density);
  - SAELens's one-to-one metrics (`sae_metrics`, against the embedded features): MCC
    (Hungarian matching of features to latents), uniqueness, each latent's precision,
    recall and F1 as a detector of its best-matching feature, explained variance.

Two seed rules, as everywhere (SCIENCE.md, "Basin statistics"):
  - "best seed": at each (activation, density) the toy seed of lowest toy eval loss, and
    under it the SAE seed of lowest SAE eval loss (a choice without the ground truth);
  - "typical seed": the median over every healthy (toy seed, SAE seed) pair.
Every value is at the toy result's first importance, lr, weight decay and init scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from superpos_jax import summary
from superpos_jax.sae import metrics as sae_metrics
from superpos_jax.sae.results import SAEResult

RECOVERED_COSINE = 0.9
EMBEDDED_NORM = summary.EMBEDDED_NORM
DENSE_FREQUENCY = 0.5
# An embedded feature is in superposition when others interfere with it this much:
# Σ_{j≠i} (Ŵ_i·W_j)² > SUPERPOSED (0 for a feature with a dimension to itself).
SUPERPOSED = 0.1
# The sparse densities that one number per activation averages over (the study's bands).
SPARSE_BELOW = summary.DENSITY_EDGES[0]
BEST, TYPICAL = summary.SEED_LABELS["best"], summary.SEED_LABELS[summary.PER_SEED]
# SAELens's metrics the summary reports (accuracy is left out: with sparse features a
# latent that never fires is right on most examples).
ONE_TO_ONE = ("mcc", "uniqueness", "precision", "recall", "f1", "explained variance")


def _quiet(fn, *args, **kwargs):
  return summary._quiet(fn, *args, **kwargs)


def embedded(W: np.ndarray, threshold: float = EMBEDDED_NORM) -> np.ndarray:
  """`W [..., m, n] -> [..., n]` bool: `‖W_i‖ > threshold`."""
  return np.linalg.norm(W, axis=-2) > threshold


def superposed(W: np.ndarray, threshold: float = SUPERPOSED) -> np.ndarray:
  """`W [..., m, n] -> [..., n]` bool: embedded features with `Σ_{j≠i} (Ŵ_i·W_j)² > threshold`."""
  norms = np.linalg.norm(W, axis=-2, keepdims=True)
  unit = np.where(norms > 0, W / np.where(norms > 0, norms, 1.0), 0.0)
  proj = np.swapaxes(unit, -1, -2) @ W  # [..., n, n]
  interference = np.sum(proj**2, axis=-1) - np.diagonal(proj**2, axis1=-2, axis2=-1)
  return embedded(W) & (interference > threshold)


def per_sae(max_cos: np.ndarray, emb: np.ndarray, frequency: np.ndarray,
            threshold: float = RECOVERED_COSINE) -> dict[str, np.ndarray]:
  """Recovery and latent statistics of SAEs.

  Args:
    max_cos: `[..., n]` max cosine of each true feature.
    emb: `[..., n]` bool, the embedded features (broadcast against `max_cos`).
    frequency: `[..., k_max]` firing frequencies, NaN beyond each SAE's dictionary.
    threshold: the cosine above which a feature is recovered.

  Returns:
    `[...]` arrays: "recovered" (count), "fraction recovered" and "mmcs" over embedded
    features (NaN where none is embedded), "dead latents" and "dense latents" (fractions
    of the SAE's latents).
  """
  emb = np.broadcast_to(emb, max_cos.shape)
  count = emb.sum(-1)
  rec = (emb & (max_cos > threshold)).sum(-1)
  valid = np.isfinite(frequency)
  latents = valid.sum(-1)
  return {"recovered": rec.astype(np.float64),
          "fraction recovered": _quiet(np.divide, rec, count),
          "mmcs": _quiet(np.divide, np.where(emb, max_cos, 0.0).sum(-1), count),
          "dead latents": _quiet(np.divide, (valid & (frequency == 0)).sum(-1), latents),
          "dense latents": _quiet(np.divide, (valid & (frequency > DENSE_FREQUENCY)).sum(-1),
                                  latents)}


def first_setting(result: SAEResult) -> SAEResult:
  """`result` at the first importance, lr, weight decay and init scale: axes
  (activation, density, seed, dict_multiple, l1, sae_seed)."""
  fixed = {a: result.coords[a][0] for a in ("importance", "lr", "weight_decay", "init_scale")
           if a in result.coords}
  return result.sel(**fixed) if fixed else result


def one_to_one(result: SAEResult, emb: np.ndarray) -> dict[str, np.ndarray]:
  """`sae_metrics.SCORES` of every SAE of `result` (axes as `first_setting`), against
  the embedded features `emb [A, D, S, n]`: name -> `[A, D, S, K, Λ, R]`."""
  res = first_setting(result)
  grid = res["eval_loss"].shape
  out = {name: np.full(grid, np.nan) for name in sae_metrics.SCORES}
  for idx in np.ndindex(*grid):
    got = sae_metrics.scores(
        res["decoder"][idx], res.toy["toy_W"][idx[:3]], emb[idx[:3]], res["coactivation"][idx],
        res["frequency"][idx], res["feature_frequency"][idx], float(res["mse"][idx]),
        float(res["hidden_variance"][idx]))
    for name, v in got.items():
      out[name][idx] = v
  return out


def sae_values(result: SAEResult) -> dict[str, np.ndarray]:
  """Every per-SAE statistic `[A, D, S, K, Λ, R]` (NaN where the SAE or its toy model
  diverged), and "embedded" / "superposed" feature counts `[A, D, S]`."""
  res = first_setting(result)
  W = res.toy["toy_W"]  # [A, D, S, m, n]
  emb = embedded(W)
  values = per_sae(res["max_cosine"], emb[:, :, :, None, None, None, :], res["frequency"])
  values.update({k: res[k] for k in ("reconstruction_error", "l0")})
  values.update(one_to_one(result, emb))
  bad = res["diverged"] | res.toy["toy_diverged"][..., None, None, None]
  values = {k: np.where(bad, np.nan, np.asarray(v, np.float64)) for k, v in values.items()}
  return values | {"embedded": emb.sum(-1), "superposed": superposed(W).sum(-1)}


def best_seed_index(result: SAEResult) -> tuple[np.ndarray, np.ndarray]:
  """`(toy [A, D], sae [A, D, S, K, Λ])`: the lowest-eval-loss toy seed of every
  (activation, density) and SAE seed of every (toy model, multiple, L1)."""
  res = first_setting(result)
  toy_loss = np.where(res.toy["toy_diverged"], np.inf, res.toy["toy_eval_loss"])
  sae_loss = np.where(res["diverged"], np.inf, res["eval_loss"])
  return np.argmin(toy_loss, axis=2), np.argmin(np.nan_to_num(sae_loss, nan=np.inf), axis=-1)


def reduce(values: np.ndarray, result: SAEResult, rule: str) -> np.ndarray:
  """`[A, D, S, K, Λ, R] -> [A, D, K, Λ]` by the best seed or the typical (median) one."""
  if rule == TYPICAL:
    A, D, S, K, L, R = values.shape
    pooled = np.moveaxis(values, 2, -2).reshape(A, D, K, L, S * R)
    return _quiet(np.nanmedian, pooled, axis=-1)
  toy, sae_seed = best_seed_index(result)
  per_toy = np.take_along_axis(values, sae_seed[..., None], axis=-1)[..., 0]  # [A, D, S, K, Λ]
  return pick_toy(per_toy, toy)


def pick_toy(x: np.ndarray, toy: np.ndarray) -> np.ndarray:
  """`x [A, D, S, ...]` at the toy seed `toy [A, D]` of each point: `[A, D, ...]`."""
  idx = toy.reshape(toy.shape + (1,) * (x.ndim - 2))
  return np.take_along_axis(x, idx, axis=2)[:, :, 0]


def _label(mult: int, l1: float) -> str:
  return f"dict x{mult}, l1 {l1:g}"


def _by_act(result: SAEResult, values) -> dict[str, Any]:
  return dict(zip(result.coords["activation"].tolist(), values))


def _by_superposition(counts: np.ndarray, frac: np.ndarray) -> list[dict[str, Any]]:
  """Per activation: {features in superposition: mean fraction recovered} over the
  points (or (point, seed) pairs) that have that count."""
  out = []
  for c, f in zip(counts, frac):
    c, f = np.ravel(c), np.ravel(f)
    ok = np.isfinite(f)
    out.append({str(int(v)): float(np.mean(f[ok & (c == v)])) for v in np.unique(c[ok])})
  return out


# long: one summary dictionary, field by field
def study_summary(result: SAEResult, headline: tuple[int, float]) -> dict[str, Any]:
  """The summary of one toy study's SAE stage (see the module docstring).

  Args:
    result: the SAE stage of one toy grid.
    headline: `(dict multiple, l1)` of the by-superposition table and the per-feature
      cosines (every setting is reported for the rest).
  """
  res = first_setting(result)
  toy, sae = res.toy_spec, res.sae_spec
  values = sae_values(result)
  acts = res.coords["activation"].tolist()
  mults, l1s = res.coords["dict_multiple"].tolist(), res.coords["l1"].tolist()
  ki, li = mults.index(headline[0]), l1s.index(headline[1])
  toy_best, sae_best = best_seed_index(result)
  pick = lambda x: pick_toy(x, toy_best)  # [A, D, ...]
  out: dict[str, Any] = {
      "toy": {"n": toy.n, "m": toy.m, "steps": toy.steps, "toy seeds": len(toy.seeds),
              "model": toy.model, "data": toy.data, "importances": list(toy.importances),
              "activations": acts, "densities": res.coords["density"].tolist()},
      "sae": {**sae.to_dict(), "recipe": "Bricken et al. 2023: c = ReLU(W_e (h - b_d) + b_e), "
              "h^ = W_d c + b_d, loss ||h - h^||^2 + l1 ||c||_1 (batch mean), Adam, unit-norm "
              "decoder columns (parallel gradient removed, renormalised every step); "
              "W_d init unit-norm normal, W_e = W_d^T, zero biases"},
      "rules": {"embedded": f"||W_i|| > {EMBEDDED_NORM}",
                "recovered": f"max over live latents of cos(W_i, d_j) > {RECOVERED_COSINE}, "
                             "embedded features only",
                "in superposition": f"embedded and sum_(j!=i) (W^_i . W_j)^2 > {SUPERPOSED}",
                "dead latent": "never active on the evaluation set",
                "dense latent": f"active on > {DENSE_FREQUENCY} of the evaluation examples",
                "mcc": "SAELens: mean |cos(W_i, d_j)| over a one-to-one (Hungarian) matching "
                       "of embedded features to all latents (dead ones too)",
                "uniqueness": "SAELens: distinct embedded features that are some latent's "
                              "best |cos| match, over the number of latents (k > n caps it at n/k)",
                "precision, recall, f1": "SAELens: each latent as a detector of its best |cos| "
                                         "embedded feature (active vs x_i > 0 on the evaluation "
                                         "set), 0 where undefined, mean over all latents",
                "explained variance": "SAELens: 1 - E||h - h^||^2 / (E||h||^2 - ||E h||^2)",
                BEST: "toy seed of lowest toy eval loss, then SAE seed of lowest SAE eval loss",
                TYPICAL: "median over every healthy (toy seed, SAE seed) pair"},
      "headline": {"dict_multiple": headline[0], "l1": headline[1]},
      "embedded features": {BEST: _by_act(res, pick(values["embedded"]))},
      "features in superposition": {BEST: _by_act(res, pick(values["superposed"]))},
      "true L0 (n x density)": (toy.n * res.coords["density"]).tolist(),
  }
  for name in ("fraction recovered", "recovered", "mmcs", *ONE_TO_ONE, "dead latents",
               "dense latents", "reconstruction_error", "l0"):
    out[name] = {rule: {_label(mk, l1): _by_act(res, reduce(values[name], result, rule)[:, :, i, j])
                        for i, mk in enumerate(mults) for j, l1 in enumerate(l1s)}
                 for rule in (BEST, TYPICAL)}
  sparse = res.coords["density"] < SPARSE_BELOW
  out[f"mean over sparse densities (1-S < {SPARSE_BELOW:g})"] = {
      name: {rule: {_label(mk, l1): _by_act(res, _quiet(
          np.nanmean, reduce(values[name], result, rule)[:, sparse, i, j], axis=1))
                    for i, mk in enumerate(mults) for j, l1 in enumerate(l1s)}
             for rule in (BEST, TYPICAL)}
      for name in ("fraction recovered", "mmcs", *ONE_TO_ONE)}
  # Per feature, best seed, headline setting: null where the feature is not embedded.
  cos = first_setting(result)["max_cosine"][:, :, :, ki, li]  # [A, D, S, R, n]
  cos = np.take_along_axis(cos, sae_best[:, :, :, ki, li][..., None, None], axis=3)[:, :, :, 0]
  emb = embedded(res.toy["toy_W"])
  out["max cosine per feature"] = {
      "seed_rule": BEST, **{"setting": _label(*headline)},
      **_by_act(res, np.where(pick(emb), pick(cos), np.nan))}
  # Recovery at equal numbers of features in superposition (headline setting).
  frac = values["fraction recovered"][:, :, :, ki, li]  # [A, D, S, R]
  sup = np.broadcast_to(values["superposed"][..., None], frac.shape)
  best_frac = reduce(values["fraction recovered"], result, BEST)[:, :, ki, li]
  out["fraction recovered by features in superposition"] = {
      "setting": _label(*headline),
      BEST: _by_act(res, _by_superposition(pick(values["superposed"]), best_frac)),
      TYPICAL: _by_act(res, _by_superposition(sup, frac))}
  return out


def sae_summary(studies: dict[str, SAEResult], headline: tuple[int, float],
                toy_timings: dict[str, dict] | None = None) -> dict[str, Any]:
  """`{study name: study_summary}` with each stage's compile and training seconds (from
  the result files, so a rerun that reuses them reports the run that made them)."""
  out: dict[str, Any] = {"experiment": "sae_recovery", "headline setting": _label(*headline)}
  for name, res in studies.items():
    out[name] = study_summary(res, headline)
    out[name]["timings"] = {"sae stage": res.meta.get("timings", {})}
    if toy_timings and name in toy_timings:
      out[name]["timings"]["toy models"] = toy_timings[name]
  return out
