"""Activation registry: reference formulas, error messages, user registration."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from superpos_jax import activations, sweep
from superpos_jax.spec import STUDY_ACTIVATIONS, SweepSpec

TINY = dict(batch_size=64, eval_size=256, log_every=10)


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def _gelu_tanh(x):
  return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


# Reference scalar formulas (math module), applied elementwise.
ELEMENTWISE = {
    "linear": lambda x: x,
    "relu": lambda x: max(0.0, x),
    "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    "gelu_tanh": _gelu_tanh,
    "silu": lambda x: x * _sigmoid(x),
    "sigmoid": _sigmoid,
    "tanh": math.tanh,
    "sigmoid_stretched": lambda x: 1.2 * _sigmoid(x) - 0.1,
    "sigmoid_stretched_0p01": lambda x: 1.02 * _sigmoid(x) - 0.01,
    "sigmoid_stretched_0p3": lambda x: 1.6 * _sigmoid(x) - 0.3,
}


def _solu_reference(z):
  e = np.exp(z - z.max())
  return z * e / e.sum()


def _reference(name, z):
  if name == "solu":
    return _solu_reference(np.asarray(z, np.float64))
  return np.array([ELEMENTWISE[name](float(v)) for v in z])


# Covers the tails (|z| up to 6) where tanh-GELU and erf-GELU differ most in relative terms.
Z = np.array([-6.0, -3.0, -1.7, -0.5, -1e-3, 0.0, 1e-3, 0.3, 1.0, 2.5, 6.0], np.float32)


class ActivationFormulaTest(chex.TestCase):

  def test_every_builtin_has_a_reference(self):
    """The formula tests below cover every built-in activation."""
    builtin = set(ELEMENTWISE) | {"solu"}
    assert builtin <= set(activations.names())
    assert set(STUDY_ACTIVATIONS) <= builtin

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*sorted(set(ELEMENTWISE) | {"solu"}))
  def test_matches_reference(self, name):
    """Each registered activation equals its textbook formula."""
    out = self.variant(activations.get(name).fn)(jnp.asarray(Z))
    chex.assert_shape(out, Z.shape)
    np.testing.assert_allclose(np.asarray(out), _reference(name, Z), rtol=1e-5, atol=1e-6)

  def test_gelu_is_exact_not_tanh(self):
    """"gelu" is the erf form; it differs from the tanh form by more than float noise."""
    z = jnp.asarray([-2.0, 1.5, 3.0], jnp.float32)
    exact = np.asarray(activations.get("gelu").fn(z))
    approx = np.asarray(activations.get("gelu_tanh").fn(z))
    assert np.max(np.abs(exact - approx)) > 1e-4

  @chex.variants(with_jit=True, without_jit=True)
  def test_solu_is_not_elementwise(self):
    """Changing one SoLU input changes the other outputs (softmax over the example)."""
    fn = self.variant(activations.get("solu").fn)
    z = jnp.asarray([0.5, 1.0, -2.0], jnp.float32)
    base = np.asarray(fn(z))
    moved = np.asarray(fn(z.at[0].set(3.0)))
    assert np.all(np.abs(moved[1:] - base[1:]) > 1e-3)
    # Expectation worked out: softmax([.5,1,-2]) = [.3662,.6037,.0301].
    np.testing.assert_allclose(base, [0.18310, 0.60375, -0.06012], rtol=0, atol=1e-4)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*activations.STRETCHES.items())
  def test_stretched_sigmoid_range(self, name, eps):
    """Each stretched sigmoid spans (-ε, 1+ε): beyond (0, 1), never past the stretch."""
    fn = self.variant(activations.get(name).fn)
    z = jnp.linspace(-30.0, 30.0, 601)
    out = np.asarray(fn(z))
    assert out.min() >= -eps and out.max() <= 1 + eps
    assert out.min() < -0.9 * eps and out.max() > 1 + 0.9 * eps
    np.testing.assert_allclose(np.asarray(fn(jnp.zeros(1))), [0.5], rtol=0, atol=1e-7)


def test_unknown_name_lists_valid_names():
  """An unknown name raises UnknownActivationError whose message lists every valid name."""
  with pytest.raises(activations.UnknownActivationError) as info:
    activations.get("reluu")
  msg = str(info.value)
  assert "reluu" in msg
  for name in activations.names():
    assert name in msg


def test_names_contain_study():
  """names() contains the seven studied activations, in STUDY's order."""
  names = activations.names()
  assert len(STUDY_ACTIVATIONS) == 7
  assert [n for n in names if n in STUDY_ACTIVATIONS] == list(STUDY_ACTIVATIONS)


@pytest.fixture
def registry(monkeypatch):
  """A private copy of the registry, so registrations do not leak into other tests."""
  monkeypatch.setattr(activations, "_REGISTRY", dict(activations._REGISTRY))


def test_duplicate_registration_raises(registry):
  """Registering an existing name raises unless overwrite=True."""
  with pytest.raises(ValueError, match="already registered"):
    activations.register("relu", jax.nn.relu, "again")
  act = activations.register("relu", jnp.abs, "replaced", overwrite=True)
  assert activations.get("relu") is act


@pytest.mark.parametrize("bad", ["", "ReLU", "my-act", "two words"])
def test_bad_names_raise(registry, bad):
  """Names must be lower-case identifiers (they are CLI flags and file keys)."""
  with pytest.raises(ValueError, match="lower-case identifier"):
    activations.register(bad, jax.nn.relu, "bad")


def test_registered_activation_runs_in_a_sweep(registry):
  """A user-registered activation works in a SweepSpec and in sweep.run.

  "test_relu_copy" must train exactly like the built-in relu (same seed, same numbers),
  and "test_solu_one" (SoLU written for one example, per_example=True) like solu;
  "test_zero" outputs 0, so its eval loss is E[Σ I_i x_i²] = Σ I_i / 3 at density 1.
  """
  activations.register("test_relu_copy", jax.nn.relu, "relu under another name")
  activations.register("test_solu_one", lambda z: z * jax.nn.softmax(z, axis=-1),
                       "solu for one example", per_example=True)
  activations.register("test_zero", jnp.zeros_like, "always 0")
  assert "test_zero" in activations.names()
  spec = SweepSpec(n=3, m=2, steps=20, **TINY, activations=(
      "relu", "test_relu_copy", "solu", "test_solu_one", "test_zero"))
  res = sweep.run(spec)
  for ref, copy in (("relu", "test_relu_copy"), ("solu", "test_solu_one")):
    chex.assert_trees_all_close(res.sel(activation=ref).data, res.sel(activation=copy).data,
                                rtol=1e-5, atol=1e-6)
  zero_loss = float(res.sel(activation="test_zero")["eval_loss"].squeeze())
  expected = (1 + 0.7 + 0.49) / 3  # importance 0.7**i, E[U²] = 1/3
  # eval set of 256: std of the mean is about 0.025.
  np.testing.assert_allclose(zero_loss, expected, rtol=0, atol=0.12)
  relu_loss = float(res.sel(activation="relu")["eval_loss"].squeeze())
  assert abs(relu_loss - zero_loss) > 1e-3
