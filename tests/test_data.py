"""Sparse feature sampling (statistics) and importance vectors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superpos_jax import data
from superpos_jax import spec as spec_mod

N_KEYS, N_FEATURES = 1000, 1000  # 10^6 features per density


def _features(density, seed=0):
  keys = jax.random.split(jax.random.key(seed), N_KEYS)
  x = jax.jit(jax.vmap(lambda k: data.sample_features(k, N_FEATURES, jnp.float32(density))))(keys)
  chex.assert_shape(x, (N_KEYS, N_FEATURES))
  return np.asarray(x, np.float64).ravel()


@pytest.mark.parametrize("density", [1.0, 0.3, 0.01])
def test_fraction_present_matches_density(density):
  """A feature is nonzero with probability `density` (5 binomial standard deviations)."""
  x = _features(density)
  frac = np.mean(x != 0)
  sigma = math.sqrt(density * (1 - density) / x.size)
  # density 1: every feature is present except u == 0 exactly (probability ~1e-7 each).
  np.testing.assert_allclose(frac, density, rtol=0, atol=5 * sigma + 1e-5)


@pytest.mark.parametrize("density", [1.0, 0.3, 0.01])
def test_present_values_are_uniform(density):
  """Present features lie in [0, 1) with mean 1/2 and variance 1/12 (5 sigma)."""
  x = _features(density, seed=1)
  v = x[x != 0]
  assert v.min() >= 0.0 and v.max() < 1.0
  k = v.size
  mean_sigma = math.sqrt(1 / 12 / k)
  var_sigma = math.sqrt((1 / 80 - 1 / 144) / k)  # Var of the sample variance, U[0,1)
  np.testing.assert_allclose(v.mean(), 0.5, rtol=0, atol=5 * mean_sigma)
  np.testing.assert_allclose(v.var(), 1 / 12, rtol=0, atol=5 * var_sigma)
  # Deciles of U[0,1): a crude check that the distribution is flat, not just moment-matched.
  np.testing.assert_allclose(np.quantile(v, np.linspace(0.1, 0.9, 9)), np.linspace(0.1, 0.9, 9),
                             rtol=0, atol=0.02)


def test_thin_is_exact_on_known_uniforms():
  """thin keeps u / density where u < density and gives exactly 0 elsewhere."""
  u = jnp.asarray([0.0, 0.1, 0.29, 0.3, 0.7, 0.99], jnp.float32)
  out = np.asarray(data.thin(u, jnp.float32(0.3)))
  np.testing.assert_allclose(out, [0.0, 1 / 3, 0.29 / 0.3, 0.0, 0.0, 0.0], rtol=1e-6, atol=0)
  np.testing.assert_array_equal(np.asarray(data.thin(u, jnp.float32(1.0))), np.asarray(u))


def test_features_differ_between_keys():
  """Different keys give different examples (the stream is not constant)."""
  a = data.sample_features(jax.random.key(0), 50, jnp.float32(0.5))
  b = data.sample_features(jax.random.key(1), 50, jnp.float32(0.5))
  chex.assert_shape(a, (50,))
  assert np.any(np.asarray(a) != np.asarray(b))


def test_geometric_importance():
  """I_i = r**i."""
  np.testing.assert_allclose(spec_mod.geometric_importance(4, 0.5), [1.0, 0.5, 0.25, 0.125],
                             rtol=1e-15, atol=0)
  np.testing.assert_allclose(spec_mod.geometric_importance(10, 0.7)[-1], 0.7**9, rtol=1e-12, atol=0)


def test_relative_importance():
  """[1, r, ..., r]."""
  np.testing.assert_allclose(spec_mod.relative_importance(2, 0.1), [1.0, 0.1], rtol=1e-15, atol=0)
  np.testing.assert_allclose(spec_mod.relative_importance(4, 3.0), [1.0, 3.0, 3.0, 3.0],
                             rtol=1e-15, atol=0)


def test_uniform_importance():
  """All ones; a parameter other than 1 is an error, not silently ignored."""
  np.testing.assert_array_equal(spec_mod.uniform_importance(5), np.ones(5))
  np.testing.assert_array_equal(spec_mod.uniform_importance(3, 1.0), np.ones(3))
  with pytest.raises(ValueError, match="uniform importance"):
    spec_mod.uniform_importance(5, 0.7)


def test_importance_kinds_registry():
  """IMPORTANCE_KINDS maps the spec's names to these helpers."""
  assert spec_mod.IMPORTANCE_KINDS == {"geometric": spec_mod.geometric_importance,
                                   "relative": spec_mod.relative_importance,
                                   "uniform": spec_mod.uniform_importance}
