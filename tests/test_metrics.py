"""Superposition metrics on hand-built weights whose answers are known."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superpos_jax import metrics, phases, results


def test_metrics_obey_rank_promotion_raise():
  """Metrics work without implicit rank promotion (the suite's broadcasting guard).

  Was a bug: metrics._unit_columns broadcast [m, n] against [n] implicitly.
  """
  W = jnp.asarray([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]])  # m=2, n=3, a dead feature
  with jax.numpy_rank_promotion("raise"):
    sup = metrics.superposition(W)
    dim = metrics.feature_dimensionality(W)
  np.testing.assert_allclose(np.asarray(sup), [1.0, 1.0, 0.0], rtol=1e-6, atol=0)
  np.testing.assert_allclose(np.asarray(dim), [0.5, 0.5, 0.0], rtol=1e-6, atol=0)


def _np_metrics(W):
  """superposition, D_i, D* by the SCIENCE.md formulas, in float64 NumPy."""
  W = np.asarray(W, np.float64)
  norms = np.linalg.norm(W, axis=0)
  unit = W / norms
  p = (unit.T @ W) ** 2  # [i, j] = (Ŵ_i·W_j)²
  sup = p.sum(1) - np.diag(p)
  dim = norms**2 / p.sum(1)
  return sup, dim, W.shape[0] / np.sum(W**2)


class MetricsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_orthonormal_features(self):
    """An orthonormal basis (n = m): no superposition, D_i = 1, D* = 1."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    W = jnp.asarray(q, jnp.float32)
    sup = self.variant(metrics.superposition)(W)
    dim = self.variant(metrics.feature_dimensionality)(W)
    chex.assert_shape([sup, dim], (4,))
    np.testing.assert_allclose(np.asarray(sup), 0.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(dim), 1.0, rtol=1e-5, atol=0)
    dstar = self.variant(metrics.dims_per_feature)(W)
    np.testing.assert_allclose(float(dstar), 1.0, rtol=1e-5, atol=0)
    norms = self.variant(metrics.feature_norms)(W)
    np.testing.assert_allclose(np.asarray(norms), 1.0, rtol=1e-5, atol=0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_antipodal_pair(self):
    """W = [[1, -1]] (m=1, n=2): D_i = 1/2, superposition 1, D* = 1/2."""
    W = jnp.asarray([[1.0, -1.0]])
    np.testing.assert_allclose(np.asarray(self.variant(metrics.feature_dimensionality)(W)),
                               [0.5, 0.5], rtol=1e-6, atol=0)
    np.testing.assert_allclose(np.asarray(self.variant(metrics.superposition)(W)),
                               [1.0, 1.0], rtol=1e-6, atol=0)
    dstar = self.variant(metrics.dims_per_feature)(W)
    np.testing.assert_allclose(float(dstar), 0.5, rtol=1e-6, atol=0)
    gram = self.variant(metrics.gram)(W)
    np.testing.assert_allclose(np.asarray(gram), [[1.0, -1.0], [-1.0, 1.0]], rtol=0, atol=0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_dead_feature_is_zero_not_nan(self):
    """A zero column gives D_i = 0 exactly and no NaN in any metric."""
    W = jnp.asarray([[1.0, 0.0, 0.6], [0.0, 0.0, 0.8]])
    outs = {
        "norms": self.variant(metrics.feature_norms)(W),
        "superposition": self.variant(metrics.superposition)(W),
        "dim": self.variant(metrics.feature_dimensionality)(W),
        "dstar": self.variant(metrics.dims_per_feature)(W),
    }
    for name, v in outs.items():
      assert np.all(np.isfinite(np.asarray(v))), name
    dim = np.asarray(outs["dim"])
    assert dim[1] == 0.0
    # Live features: Ŵ_0·W_2 = 0.6, Ŵ_2·W_0 = 0.6 -> superposition .36; D = 1/(1+.36).
    np.testing.assert_allclose(np.asarray(outs["superposition"]), [0.36, 0.0, 0.36],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dim[[0, 2]], 1 / 1.36, rtol=1e-5, atol=0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_random_weights_match_numpy(self):
    """On random W every metric equals its formula computed in NumPy."""
    W = np.random.default_rng(3).normal(size=(5, 10)).astype(np.float32)
    sup, dim, dstar = _np_metrics(W)
    Wj = jnp.asarray(W)
    np.testing.assert_allclose(np.asarray(self.variant(metrics.superposition)(Wj)), sup,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(self.variant(metrics.feature_dimensionality)(Wj)), dim,
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(self.variant(metrics.dims_per_feature)(Wj)), dstar,
                               rtol=1e-5, atol=0)
    np.testing.assert_allclose(np.asarray(self.variant(metrics.gram)(Wj)),
                               W.astype(np.float64).T @ W, rtol=1e-5, atol=1e-5)


def test_dims_per_feature_formula():
  """D* = m / ‖W‖_F² on a W whose Frobenius norm is 4 (m = 2 -> D* = 1/2)."""
  W = jnp.asarray([[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
  np.testing.assert_allclose(float(metrics.dims_per_feature(W)), 2 / 4, rtol=1e-7, atol=0)


@pytest.mark.parametrize("W, phase", [
    ([[1.0, 0.0]], metrics.FEATURE1),
    ([[0.0, 1.0]], metrics.FEATURE2),
    ([[1.0, -1.0]], metrics.BOTH),
    ([[0.0, 0.0]], metrics.NEITHER),
    ([[0.5, 0.0]], metrics.AMBIGUOUS),
])
def test_classify_phase_default(W, phase):
  """Default thresholds (0.8 / 0.2) put the canonical n=2 weights in their phase."""
  got = jax.jit(metrics.classify_phase)(jnp.asarray(W))
  assert got.dtype == jnp.int32
  assert int(got) == phase


def test_classify_phase_custom_thresholds():
  """Thresholds are honoured: ‖W_1‖ = 0.5 is encoded above 0.4, ambiguous by default."""
  W = jnp.asarray([[0.5, 0.0]])
  assert int(metrics.classify_phase(W)) == metrics.AMBIGUOUS
  assert int(metrics.classify_phase(W, metrics.PhaseThresholds(encoded=0.4, not_encoded=0.1))) \
      == metrics.FEATURE1
  # Raising not_encoded past 0.5 turns "feature 1 only" into "neither".
  assert int(metrics.classify_phase(W, metrics.PhaseThresholds(encoded=0.9, not_encoded=0.6))) \
      == metrics.NEITHER


def test_phase_names_are_defined_once():
  """metrics, results and plots use the one list of phases.PHASES, and its indices."""
  assert results.PHASES is phases.PHASES and metrics.BOTH is phases.BOTH
  assert [phases.PHASES[i] for i in (phases.NEITHER, phases.FEATURE1, phases.BOTH,
                                     phases.FEATURE2, phases.AMBIGUOUS)] == \
      ["neither", "feature 1 only", "superposition", "feature 2 only", "ambiguous"]
