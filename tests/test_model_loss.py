"""Init statistics, the forward pass and the loss, against NumPy and hand arithmetic."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from superpos_jax import activations, inits, model
from tests.reference import example_loss, loss_fn
from superpos_jax.model import Params

N, M, KEYS = 200, 20, 100  # 400k weights


def _many_inits(init):
  keys = jax.random.split(jax.random.key(0), KEYS)
  p = jax.vmap(lambda k: model.init_params(k, N, M, init=init, instances=20))(keys)
  chex.assert_shape(p.W, (KEYS, M, N))
  chex.assert_shape(p.b, (KEYS, N))
  return p


def test_xavier_std_is_per_model():
  """"xavier_normal" has std sqrt(2/(n+m)) (sample std within 2%) and mean 0."""
  expected = math.sqrt(2 / (N + M))
  assert inits.init_std(N, M, "xavier_normal") == pytest.approx(expected, rel=1e-12)
  w = np.asarray(_many_inits("xavier_normal").W, np.float64)
  np.testing.assert_allclose(w.std(), expected, rtol=0.02, atol=0)
  np.testing.assert_allclose(w.mean(), 0.0, rtol=0, atol=5 * expected / math.sqrt(w.size))


def test_xavier_is_untruncated():
  """The normal is not truncated at 2 std (glorot_normal's truncation would give 0 there)."""
  std = math.sqrt(2 / (N + M))
  w = np.asarray(_many_inits("xavier_normal").W, np.float64)
  tail = np.mean(np.abs(w) > 2 * std)
  expected_tail = math.erfc(2 / math.sqrt(2))  # 0.0455 for a normal
  np.testing.assert_allclose(tail, expected_tail, rtol=0.05, atol=0)
  assert np.abs(w).max() > 4 * std


def test_notebook_std():
  """"notebook" has std sqrt(2/(m(n+I))): 0.0213 for n=200, m=20, I=20."""
  assert inits.init_std(N, M, "notebook", instances=20) == pytest.approx(0.02132, abs=5e-6)
  w = np.asarray(_many_inits("notebook").W, np.float64)
  np.testing.assert_allclose(w.std(), math.sqrt(2 / (M * (N + 20))), rtol=0.02, atol=0)


def test_bias_is_zero_and_keys_matter():
  """Bias starts at exactly 0; different keys give different W."""
  p = _many_inits("xavier_normal")
  np.testing.assert_array_equal(np.asarray(p.b), 0.0)
  assert not np.allclose(np.asarray(p.W[0]), np.asarray(p.W[1]))


def test_unknown_init_raises():
  """An unknown init name is an error that lists the valid ones."""
  with pytest.raises(ValueError, match="xavier_normal"):
    inits.init_std(N, M, "kaiming")


def _random_params(n=6, m=3, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(m, n)).astype(np.float32), rng.normal(size=n).astype(np.float32)


def _np_forward(W, b, x, f):
  W, b, x = (np.asarray(a, np.float64) for a in (W, b, x))
  return f(W.T @ (W @ x) + b)


NP_ACTS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "solu": lambda z: z * np.exp(z) / np.exp(z).sum(),
}


class ForwardTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((2, 1), (6, 3), (40, 20))  # tiny to large W (forward may
  def test_forward_matches_numpy(self, n, m):          # pick another kernel by size)
    """forward(params, x) = f(WᵀWx + b) for one example, for several activations."""
    W, b = _random_params(n, m)
    W = W / np.sqrt(n).astype(np.float32)  # keep pre-activations O(1)
    x = np.random.default_rng(1).uniform(size=n).astype(np.float32)
    params = Params(jnp.asarray(W), jnp.asarray(b))
    for name, f in NP_ACTS.items():
      act = activations.get(name).fn
      out = self.variant(lambda p, x: model.forward(p, x, act))(params, jnp.asarray(x))
      chex.assert_shape(out, (n,))
      np.testing.assert_allclose(np.asarray(out), _np_forward(W, b, x, f), rtol=1e-5, atol=1e-5,
                                 err_msg=name)

  @chex.variants(with_jit=True, without_jit=True)
  def test_example_loss_by_hand(self):
    """Σ_i I_i (x_i - x'_i)² on a 3-feature example worked out by hand.

    W = [[1,0,1],[0,1,0]], b = [0,-.5,-.7], x = [.5,1,0]: h = Wx = [.5,1],
    WᵀWx + b = [.5,.5,-.2]. ReLU: x' = [.5,.5,0], error [0,.5,0], loss .5·.25 = 0.125.
    Linear: x' = [.5,.5,-.2], error [0,.5,.2], loss 0.125 + .25·.04 = 0.135.
    """
    params = Params(W=jnp.asarray([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
                    b=jnp.asarray([0.0, -0.5, -0.7]))
    x = jnp.asarray([0.5, 1.0, 0.0])
    imp = jnp.asarray([1.0, 0.5, 0.25])
    for name, expected in (("relu", 0.125), ("linear", 0.135)):
      act = activations.get(name).fn
      got = self.variant(lambda p, x, i: example_loss(p, x, i, act))(params, x, imp)
      chex.assert_shape(got, ())
      np.testing.assert_allclose(float(got), expected, rtol=1e-6, atol=1e-7, err_msg=name)

  @chex.variants(with_jit=True, without_jit=True)
  def test_loss_fn_is_batch_mean(self):
    """loss_fn is the mean over the batch of the per-example loss (not the sum)."""
    W, b = _random_params()
    rng = np.random.default_rng(2)
    xs = rng.uniform(size=(7, 6)).astype(np.float32)
    imp = rng.uniform(0.1, 1.0, size=6).astype(np.float32)
    f = NP_ACTS["relu"]
    per_example = [np.sum(imp * (x - _np_forward(W, b, x, f)) ** 2) for x in xs]
    act = activations.get("relu").fn
    got = self.variant(lambda p, xs, i: loss_fn(p, xs, i, act))(
        Params(jnp.asarray(W), jnp.asarray(b)), jnp.asarray(xs), jnp.asarray(imp))
    np.testing.assert_allclose(float(got), np.mean(per_example), rtol=1e-5, atol=1e-6)
