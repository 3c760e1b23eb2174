"""One-to-one SAE metrics as SAELens defines them on synthetic data (numpy + scipy only).

SAELens (`sae_lens/synthetic/evals.py`, version 6.54) scores an SAE trained on data with
known feature directions by (SCIENCE.md, "One-to-one SAE metrics"):

  MCC          mean |cos(feature, latent)| over the pairs of a one-to-one matching that
               maximises its sum (Hungarian: `scipy.optimize.linear_sum_assignment` on
               `1 − |cos|`); min(k, n) pairs; every latent takes part, dead or not.
  uniqueness   (distinct true features that are some latent's best |cos| match) / k:
               1 when every latent tracks its own feature; two latents on one feature
               lower it, and so does a dictionary larger than the features (k > n caps
               it at n / k).
  detection    each latent as a detector of its best-|cos| true feature (argmax, not the
               one-to-one match): "latent active" (code ≠ 0) against "feature present"
               (x_i > 0) on an evaluation set: precision TP/(TP+FP), recall TP/(TP+FN),
               F1, accuracy, each 0 where undefined, then the mean over all k latents
               (a dead latent scores 0 precision, recall and F1).
  explained    1 − E‖h − ĥ‖² / (E‖h‖² − ‖E h‖²), 1 (or 0) where the variance is below
  variance     1e-10 and the error is (or is not).
  L0, dead     mean active latents per example; latents never active.

Directions are COLUMNS here, as everywhere in this project (`W [m, n]`, decoder
`[m, k]`); SAELens passes rows. Cosines use SAELens's clamp (norms below 1e-8 count as
1e-8, so a zero column has cosine 0). The SAE program stores what the detection and
variance metrics need (`sae.SAEMetrics`: co-activation counts, frequencies, MSE and
variance on the evaluation set), so every function here reads arrays only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

NORM_CLAMP = 1e-8  # sae_lens.util.cosine_similarities
VARIANCE_FLOOR = 1e-10  # sae_lens.evals.ExplainedVarianceCalculator


class Detection(NamedTuple):
  """Per latent, as a detector of its best-matching true feature: `[k]` each."""

  precision: np.ndarray
  recall: np.ndarray
  f1: np.ndarray
  accuracy: np.ndarray


def abs_cosines(features: np.ndarray, latents: np.ndarray) -> np.ndarray:
  """`|cos|` between the columns of `features [m, n]` and `latents [m, k]`: `[n, k]`."""
  unit = lambda X: X / np.maximum(np.linalg.norm(X, axis=0, keepdims=True), NORM_CLAMP)
  return np.abs(unit(np.asarray(features, np.float64)).T @ unit(np.asarray(latents, np.float64)))


def matching(features: np.ndarray, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The one-to-one matching of largest total `|cos|`: `(feature index, latent index)`,
  min(n, k) pairs each (scipy's Hungarian solver on `1 − |cos|`)."""
  return linear_sum_assignment(1.0 - abs_cosines(features, latents))


def mcc(features: np.ndarray, latents: np.ndarray) -> float:
  """Mean correlation coefficient: mean `|cos|` over the one-to-one matching.

  Args:
    features: true directions as columns `[m, n]`.
    latents: decoder columns `[m, k]` (all of them: dead latents take part).

  Returns:
    A value in [0, 1]; NaN when either set is empty.
  """
  if np.shape(features)[1] == 0 or np.shape(latents)[1] == 0:
    return float("nan")
  rows, cols = matching(features, latents)
  return float(abs_cosines(features, latents)[rows, cols].mean())


def best_features(features: np.ndarray, latents: np.ndarray) -> np.ndarray:
  """Each latent's best `|cos|` true feature (first on ties, as torch's argmax): `[k]`."""
  return np.argmax(abs_cosines(features, latents), axis=0)


def uniqueness(features: np.ndarray, latents: np.ndarray) -> float:
  """Distinct best-matching true features over the number of latents (0 without latents)."""
  k = np.shape(latents)[1]
  if k == 0:
    return 0.0
  return len(np.unique(best_features(features, latents))) / k


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def detection(coactive: np.ndarray, latent_active: np.ndarray, feature_present: np.ndarray,
              matches: np.ndarray, examples: float) -> Detection:
  """Precision, recall, F1 and accuracy of each latent as a detector of its matched feature.

  Counts or fractions alike (all divided by the same number of examples).

  Args:
    coactive: `[k, n]` examples where latent j is active and feature i present.
    latent_active: `[k]` examples where latent j is active.
    feature_present: `[n]` examples where feature i is present.
    matches: `[k]` the feature each latent is scored against (`best_features`).
    examples: the number of examples (1 for fractions).

  Returns:
    A `Detection` of `[k]` arrays; 0 where a ratio is undefined, as SAELens.
  """
  k = len(matches)
  tp = np.asarray(coactive, np.float64)[np.arange(k), matches]
  fp = np.asarray(latent_active, np.float64) - tp
  fn = np.asarray(feature_present, np.float64)[matches] - tp
  tn = examples - tp - fp - fn
  precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
  f1 = _ratio(2 * precision * recall, precision + recall)
  return Detection(precision, recall, f1, (tp + tn) / max(examples, 1e-8))


def explained_variance(mse: float, variance: float) -> float:
  """`1 − mse / variance` (per-example means of `‖h − ĥ‖²` and of `‖h − E h‖²`), with
  SAELens's guard for a constant input."""
  if variance < VARIANCE_FLOOR:
    return 1.0 if mse < VARIANCE_FLOOR else 0.0
  return 1.0 - mse / variance


def dead_latents(latent_active: np.ndarray) -> int:
  """Latents never active (`latent_active` counts or fractions, `[k]`)."""
  return int(np.sum(np.asarray(latent_active) == 0))


# The names `scores` returns, in the order summaries list them.
SCORES = ("mcc", "uniqueness", "precision", "recall", "f1", "accuracy", "explained variance")


def scores(decoder: np.ndarray, W: np.ndarray, features: np.ndarray, coactivation: np.ndarray,
           frequency: np.ndarray, feature_frequency: np.ndarray, mse: float,
           variance: float) -> dict[str, float]:
  """SAELens's metrics of one SAE from what the SAE stage stores (fractions of examples).

  Args:
    decoder: `[m, k_max]`; columns with a NaN (beyond this SAE's k) are dropped.
    W: the toy model `[m, n]`; its columns are the true directions.
    features: `[n]` bool, the true features to score against (the summary passes the
      embedded ones: a feature the toy model does not embed is not in `h`).
    coactivation, frequency, feature_frequency: `[k_max, n]`, `[k_max]`, `[n]`.
    mse, variance: the evaluation set's `‖h − ĥ‖²` and `‖h − E h‖²` per example.

  Returns:
    `SCORES` -> value: the means over latents for the detection metrics; NaN for the
    feature-matching ones where no feature is selected or no decoder column is finite.
  """
  live = np.all(np.isfinite(decoder), axis=0)
  D, F = decoder[:, live], W[:, features]
  out = {"explained variance": explained_variance(mse, variance)}
  if F.shape[1] == 0 or D.shape[1] == 0:
    return out | {name: float("nan") for name in SCORES if name not in out}
  matches = best_features(F, D)
  det = detection(coactivation[live][:, features], frequency[live],
                  feature_frequency[features], matches, 1.0)
  return out | {"mcc": mcc(F, D), "uniqueness": uniqueness(F, D),
                **{name: float(np.mean(v)) for name, v in det._asdict().items()}}
