"""SAELens's one-to-one SAE metrics (`sae_metrics`): hand-made cases everywhere, and the
same matrices scored by SAELens itself where `sae-lens` is installed (an extra:
pip install -e '.[saelens]')."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superpos_jax import data
from superpos_jax.sae import metrics as sae_metrics
from superpos_jax.sae import summary as summary_sae
from superpos_jax.sae import train as sae

HAS_SAELENS = importlib.util.find_spec("sae_lens") is not None
needs_saelens = pytest.mark.skipif(
    not HAS_SAELENS, reason="sae-lens is not installed (an extra: pip install -e '.[saelens]')")
S = 1 / np.sqrt(2)


def test_a_perfect_dictionary_scores_one_whatever_its_order_sign_and_scale():
  F = np.eye(4)[:, :3] * [2.0, 0.5, 1.0]  # [m=4, n=3]
  D = np.stack([-F[:, 2], 3 * F[:, 0], F[:, 1]], axis=1)
  assert sae_metrics.mcc(F, D) == pytest.approx(1.0)
  assert sae_metrics.uniqueness(F, D) == 1.0
  np.testing.assert_array_equal(sae_metrics.best_features(F, D), [2, 0, 1])


def test_one_latent_claimed_by_two_features_is_seen_by_mcc_not_by_mmcs():
  """Features e1 and (e1 + e2)/√2 both have their best latent on e1; the second latent
  (e3) reads neither. MMCS counts both features as found (1 and 0.71); the one-to-one
  matching must give one of them the useless latent."""
  F = np.array([[1.0, S], [0.0, S], [0.0, 0.0]])
  D = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
  mmcs = np.mean(np.max(sae_metrics.abs_cosines(F, D), axis=1))
  assert mmcs == pytest.approx((1 + S) / 2)
  assert sae_metrics.mcc(F, D) == pytest.approx((1 + 0) / 2)
  assert sae_metrics.uniqueness(F, D) == 0.5  # both latents' best feature is feature 0


def test_a_split_feature_lowers_uniqueness_and_mcc():
  """Two latents on feature 0 (one exact, one at 10 degrees), none on feature 1."""
  t = np.deg2rad(10)
  F = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
  D = np.array([[1.0, np.cos(t)], [0.0, np.sin(t)], [0.0, 0.0]])
  assert sae_metrics.uniqueness(F, D) == 0.5
  assert sae_metrics.mcc(F, D) == pytest.approx(0.5)  # feature 1 gets a cosine-0 latent
  assert sae_metrics.mcc(F, D[:, :1]) == pytest.approx(1.0)  # min(n, k) = 1 pair


def test_a_zero_column_has_cosine_zero_and_every_latent_counts():
  F = np.array([[1.0, 0.0], [0.0, 0.0]])  # feature 1 is a zero column
  D = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
  np.testing.assert_allclose(sae_metrics.abs_cosines(F, D), [[0, 1, 0], [0, 0, 0]])
  assert sae_metrics.mcc(F, D) == pytest.approx(0.5)
  assert sae_metrics.uniqueness(F, D) == pytest.approx(1 / 3)  # three latents, one feature


def test_detection_counts_by_hand_with_a_dead_latent():
  """8 examples; latent 0 matches feature 0, latent 1 feature 1, latent 2 is dead."""
  present = np.array([[1, 1, 1, 1, 0, 0, 0, 0],
                      [0, 0, 1, 1, 1, 1, 0, 0]], bool)  # [n, E]
  active = np.array([[1, 1, 1, 0, 1, 0, 0, 0],     # TP 3, FP 1, FN 1
                     [0, 0, 0, 0, 1, 1, 0, 0],     # TP 2, FP 0, FN 2
                     [0, 0, 0, 0, 0, 0, 0, 0]], bool)
  coactive = active.astype(float) @ present.T.astype(float)
  det = sae_metrics.detection(coactive, active.sum(1), present.sum(1), np.array([0, 1, 0]), 8)
  np.testing.assert_allclose(det.precision, [3 / 4, 1.0, 0.0])
  np.testing.assert_allclose(det.recall, [3 / 4, 2 / 4, 0.0])
  np.testing.assert_allclose(det.f1, [3 / 4, 2 / 3, 0.0])
  np.testing.assert_allclose(det.accuracy, [6 / 8, 6 / 8, 4 / 8])
  frac = sae_metrics.detection(coactive / 8, active.mean(1), present.mean(1),
                               np.array([0, 1, 0]), 1.0)
  for a, b in zip(det, frac):
    np.testing.assert_allclose(a, b)
  assert sae_metrics.dead_latents(active.sum(1)) == 1


def test_explained_variance_and_its_guard():
  h = np.random.default_rng(0).normal(size=(100, 3)) + 5.0  # a large mean: variance, not ‖h‖²
  h_hat = h + 0.1
  var = np.mean(np.sum((h - h.mean(0)) ** 2, axis=1))
  assert sae_metrics.explained_variance(0.03, var) == pytest.approx(1 - 0.03 / var)
  assert sae_metrics.explained_variance(np.mean(np.sum((h - h_hat) ** 2, 1)), var) < 1
  assert sae_metrics.explained_variance(0.0, 0.0) == 1.0
  assert sae_metrics.explained_variance(0.5, 1e-12) == 0.0


def test_scores_drop_padded_latents_and_unembedded_features():
  W = np.array([[1.0, 0.0, 0.01], [0.0, 1.0, 0.0]])  # feature 2 not embedded
  dec = np.array([[1.0, 0.0, np.nan], [0.0, 1.0, np.nan]])  # k = 2 of k_max = 3
  coact = np.array([[0.1, 0.0, 0.0], [0.0, 0.2, 0.0], [np.nan] * 3])
  got = sae_metrics.scores(dec, W, summary_sae.embedded(W), coact, np.array([0.1, 0.2, np.nan]),
                           np.array([0.1, 0.2, 0.05]), 0.0, 1.0)
  assert got["mcc"] == pytest.approx(1.0) and got["uniqueness"] == 1.0
  assert got["f1"] == pytest.approx(1.0) and got["explained variance"] == 1.0
  none = sae_metrics.scores(dec, W, np.zeros(3, bool), coact, np.zeros(3), np.zeros(3), 0, 1)
  assert np.isnan(none["mcc"]) and np.isnan(none["f1"])


def _program_metrics(seed=0, n=6, m=3, k=8, E=4096, density=0.2):
  """One SAE of random parameters scored by the SAE program on a toy model's features."""
  keys = jax.random.split(jax.random.key(seed), 3)
  W = jax.random.normal(keys[0], (m, n))
  params = sae.init_params(keys[1], m, k)._replace(b_e=jnp.full((k,), -0.3))
  x = data.features("independent", jax.random.uniform(keys[2], (n, E)), density)
  return params, x, W, sae.metrics(params, x, W, 0.1)


def test_the_program_stores_the_counts_the_metrics_need():
  params, x, W, met = _program_metrics()
  c = np.asarray(sae.encode(params, W @ x))
  active, present = c > 0, np.asarray(x) > 0
  np.testing.assert_allclose(met.coactivation, active.astype(float) @ present.T / x.shape[1],
                             atol=1e-6)
  np.testing.assert_allclose(met.feature_frequency, present.mean(1), atol=1e-6)
  h = np.asarray(W @ x, np.float64)
  err = h - np.asarray(sae.decode(params, jnp.asarray(c)))
  np.testing.assert_allclose(met.mse, np.mean(np.sum(err**2, 0)), rtol=1e-4)
  np.testing.assert_allclose(met.hidden_variance,
                             np.mean(np.sum((h - h.mean(1, keepdims=True)) ** 2, 0)), rtol=1e-4)


@needs_saelens
def test_the_same_matrices_scored_by_saelens():
  """MCC, uniqueness, detection metrics and explained variance against SAELens's own
  functions on random matrices (rows there, columns here)."""
  import torch
  from sae_lens.evals import ExplainedVarianceCalculator
  from sae_lens.synthetic import evals
  rng = np.random.default_rng(1)
  for n, m, k in ((6, 4, 6), (10, 5, 20), (12, 6, 9)):
    F, D = rng.normal(size=(m, n)), rng.normal(size=(m, k))
    t = lambda a: torch.tensor(a.T, dtype=torch.float64)
    assert sae_metrics.mcc(F, D) == pytest.approx(evals.mean_correlation_coefficient(t(D), t(F)))
    assert sae_metrics.uniqueness(F, D) == pytest.approx(evals.feature_uniqueness(t(D), t(F)))
    acts = rng.uniform(size=(500, n)) * (rng.uniform(size=(500, n)) < 0.3)
    codes = np.maximum(rng.normal(size=(500, k)) - 0.5, 0.0)
    codes[:, 0] = 0.0  # a dead latent
    theirs = evals.compute_classification_metrics(
        torch.tensor(codes), torch.tensor(acts), t(D), t(F))
    act, pres = codes != 0, acts > 0
    ours = sae_metrics.detection(act.astype(float).T @ pres, act.sum(0), pres.sum(0),
                                 sae_metrics.best_features(F, D), 500)
    for name in ("precision", "recall", "accuracy"):
      assert np.mean(getattr(ours, name)) == pytest.approx(getattr(theirs, name)), name
    assert np.mean(ours.f1) == pytest.approx(theirs.f1_score)
    h = rng.normal(size=(300, m)) + 3.0
    h_hat = h + rng.normal(scale=0.3, size=h.shape)
    calc = ExplainedVarianceCalculator()
    calc.add_batch(torch.tensor(h_hat), torch.tensor(h))
    var = np.mean(np.sum((h - h.mean(0)) ** 2, 1))
    assert sae_metrics.explained_variance(np.mean(np.sum((h - h_hat) ** 2, 1)), var) == \
        pytest.approx(calc.compute())


@needs_saelens
def test_the_programs_statistics_give_saelens_numbers():
  """One SAE scored from what the SAE program stores equals SAELens's scoring of the same
  codes, decoder and features."""
  import torch
  from sae_lens.evals import ExplainedVarianceCalculator
  from sae_lens.synthetic import evals
  params, x, W, met = _program_metrics(seed=2)
  h = W @ x
  c = sae.encode(params, h)
  t = lambda a: torch.tensor(np.asarray(a).T, dtype=torch.float32)
  got = sae_metrics.scores(np.asarray(params.W_d), np.asarray(W), np.ones(W.shape[1], bool),
                           np.asarray(met.coactivation), np.asarray(met.frequency),
                           np.asarray(met.feature_frequency), float(met.mse),
                           float(met.hidden_variance))
  cls = evals.compute_classification_metrics(t(c), t(x), t(params.W_d), t(W))
  calc = ExplainedVarianceCalculator()
  calc.add_batch(t(sae.decode(params, c)), t(h))
  assert got["mcc"] == pytest.approx(evals.mean_correlation_coefficient(t(params.W_d), t(W)),
                                     rel=1e-5)
  assert got["uniqueness"] == evals.feature_uniqueness(t(params.W_d), t(W))
  assert got["f1"] == pytest.approx(cls.f1_score, rel=1e-5)
  assert got["precision"] == pytest.approx(cls.precision, rel=1e-5)
  assert got["recall"] == pytest.approx(cls.recall, rel=1e-5)
  assert got["explained variance"] == pytest.approx(calc.compute(), rel=1e-4)


@needs_saelens
@pytest.mark.slow
def test_saelens_check_quick(tmp_path):
  """benchmarks/saelens_check.py end to end on a tiny grid: SAELens's own MCC agrees with
  sae_metrics on its SAEs (the script fails otherwise), timings and both MCCs written."""
  import json
  import os
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, os.path.join(repo, "benchmarks", "saelens_check.py"),
                         "--preset", "quick", "--out", str(tmp_path / "runs"),
                         "--figures", str(tmp_path)], capture_output=True, text=True,
                        timeout=900, cwd=repo)
  assert proc.returncode == 0, proc.stderr
  report = json.loads((tmp_path / "saelens_check.json").read_text())
  assert report["timings"]["saes"] == 4 and report["timings"]["saelens_train_s"] > 0
  mcc = report["per activation and density"]["mcc"]
  for way in ("engine", "saelens"):
    v = np.array(mcc[way]["relu"], float)
    assert v.shape == (2,) and np.all((v > 0) & (v <= 1))
