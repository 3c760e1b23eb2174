"""The options beyond the study: weight decay and init scale axes, model and data families.

Each against an independent reference: a point alone equals it inside a grid, the model
families' loss and gradient equal a per-example NumPy/plain-jax version, the data families'
marginals and pair statistics hold by sampling, and new axis values reuse the program.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superpos_jax import program
from superpos_jax import activations, data, families, loss, model, plan, sweep
from superpos_jax.spec import SpecError, SweepSpec
from tests.test_sweep import CompileEvents

TINY = dict(batch_size=32, eval_size=128, log_every=5, steps=10)


@pytest.mark.parametrize("family", [
    dict(model="bottleneck", data="independent"),
    dict(model="privileged", data="correlated"),
    dict(model="abs", data="anticorrelated", m=6)])
def test_point_alone_equals_point_in_grid(family):
  """New axis values: a (weight decay, init scale) point trains alone as inside the grid."""
  base = dict(dict(n=4, m=2, activations=("relu", "tanh"), densities=(0.4, 0.1)), **family)
  grid = sweep.run(SweepSpec(weight_decays=(0.0, 0.1), init_scales=(0.3, 3.0),
                             seeds=(0, 1), **base, **TINY), progress=False)
  point = dict(activation="tanh", density=0.1, weight_decay=0.1, init_scale=0.3, seed=1)
  alone = sweep.run(SweepSpec(**dict(base, activations=("tanh",), densities=(0.1,)),
                              weight_decays=(0.1,), init_scales=(0.3,), seeds=(1,), **TINY),
                    progress=False)
  in_grid, by_itself = grid.sel(**point).data, alone.sel(**point).data
  chex.assert_trees_all_close(in_grid, by_itself, rtol=1e-4, atol=1e-5)
  assert ("param_W2" in in_grid) == (family["model"] == "abs")
  # Not vacuous: the init scale and the weight decay change the model (from the same
  # start, paired: a decay of 0.1 over 10 steps at lr 1e-3 moves W by ~1e-3 relative).
  for other in (dict(point, init_scale=3.0), dict(point, weight_decay=0.0)):
    assert not np.allclose(grid.sel(**other)["W"], in_grid["W"], rtol=1e-5, atol=1e-6)


def test_init_scale_multiplies_the_draw():
  """`init_params(scale=α)` is α times the family's draw, W2 included; normal has σ² = 1/m."""
  key = jax.random.key(3)
  for name in ("bottleneck", "abs"):
    one = model.init_params(key, 50, 40, init="normal", model=name)
    three = model.init_params(key, 50, 40, init="normal", model=name, scale=3.0)
    chex.assert_trees_all_close(jax.tree.map(lambda x: 3.0 * x, one), three, rtol=1e-6)
  W = model.init_params(key, 400, 100, init="normal").W
  np.testing.assert_allclose(np.std(np.asarray(W)), 0.1, rtol=0.02)


def _reference_loss(name, W, b, W2, xs, importance, act):
  """Per-example loop in NumPy-style jax, written from SCIENCE.md's formulas."""
  total = 0.0
  for x in xs:
    if name == "privileged":
      out, target = act(W.T @ act(W @ x) + b), x
    else:
      out, target = jnp.maximum(W2 @ act(W @ x) + b, 0.0), jnp.abs(x)
    total = total + jnp.sum(importance * (target - out) ** 2)
  return total / len(xs)


@pytest.mark.parametrize("name", ["privileged", "abs"])
@pytest.mark.parametrize("act_name", ["relu", "tanh", "solu"])
def test_model_family_loss_and_gradient(name, act_name):
  rng = np.random.default_rng(0)
  n, m, B = 4, 3, 5
  W, b = rng.normal(size=(m, n)), rng.normal(size=n)
  W2 = rng.normal(size=(n, m)) if name == "abs" else None
  xs = rng.uniform(-1, 1, size=(B, n)) * (rng.uniform(size=(B, n)) < 0.6)
  importance = 0.8 ** np.arange(n)
  act = activations.get(act_name)
  params = model.Params(*(jnp.asarray(p, jnp.float32) if p is not None else None
                          for p in (W, b, W2)))
  engine = jax.jit(jax.value_and_grad(lambda p: loss.family_loss(
      families.get("model", name), p, jnp.asarray(xs.T, jnp.float32), jnp.asarray(importance, jnp.float32), act.fn)))
  reference = jax.value_and_grad(lambda p: _reference_loss(
      name, p.W, p.b, p.W2, jnp.asarray(xs, jnp.float32), jnp.asarray(importance, jnp.float32),
      act.fn))
  chex.assert_trees_all_close(engine(params), reference(params), rtol=1e-5, atol=1e-6)
  # The NumPy value, for ReLU (no jax at all on this side).
  if act_name == "relu":
    relu = lambda z: np.maximum(z, 0.0)
    if name == "privileged":
      out, target = relu(relu(xs @ W.T) @ W + b), xs
    else:
      out, target = relu(relu(xs @ W.T) @ W2.T + b), np.abs(xs)
    expected = np.mean(np.sum(importance * (target - out) ** 2, axis=1))
    np.testing.assert_allclose(float(engine(params)[0]), expected, rtol=1e-5)


def test_builtin_families_registered():
  assert families.names("model")[:3] == ("bottleneck", "privileged", "abs")
  assert families.names("data")[:3] == ("independent", "correlated", "anticorrelated")
  assert families.names("optimizer")[0] == "adamw"


def _sample(family, p, signed=False, n=4, B=200_000):
  u = jax.random.uniform(jax.random.key(0), (n, B))
  return np.asarray(data.features(family, u, jnp.float32(p), signed=signed))


@pytest.mark.parametrize("family", ["independent", "correlated", "anticorrelated"])
def test_data_family_marginals(family):
  """Every feature present with probability p; present values U[0,1) (mean 1/2, var 1/12)."""
  p = 0.3
  x = _sample(family, p)
  on = x != 0
  np.testing.assert_allclose(on.mean(axis=1), p, atol=0.005)
  vals = x[on]
  assert vals.min() >= 0 and vals.max() < 1
  np.testing.assert_allclose([vals.mean(), vals.var()], [0.5, 1 / 12], atol=0.005)


def test_data_family_pair_statistics():
  """Pairs (2k, 2k+1): together with probability p (correlated), never (anticorrelated),
  p² (independent); values of a correlated pair are uncorrelated; pairs are independent."""
  p = 0.3
  both = {f: (_sample(f, p)[0::2] != 0) & (_sample(f, p)[1::2] != 0)
          for f in ("independent", "correlated", "anticorrelated")}
  np.testing.assert_allclose(both["independent"].mean(), p * p, atol=0.005)
  np.testing.assert_allclose(both["correlated"].mean(), p, atol=0.005)
  assert not both["anticorrelated"].any()
  x = _sample("correlated", p)
  on = x[0] != 0
  assert abs(np.corrcoef(x[0][on], x[1][on])[0, 1]) < 0.02
  # Different pairs are independent: both pairs present p².
  np.testing.assert_allclose(((x[0] != 0) & (x[2] != 0)).mean(), p * p, atol=0.005)


def test_signed_features_and_independent_is_thin():
  """The abs model's inputs are U[-1, 1) when present, 0 otherwise; the unsigned
  independent family is `thin` bit for bit (the default path's numbers)."""
  x = _sample("independent", 0.5, signed=True)
  vals = x[x != 0]
  assert vals.min() < -0.99 and vals.max() > 0.99
  np.testing.assert_allclose(vals.mean(), 0.0, atol=0.01)
  u = jax.random.uniform(jax.random.key(1), (6, 100))
  np.testing.assert_array_equal(data.features("independent", u, 0.2), data.thin(u, 0.2))


def test_spec_validates_families():
  with pytest.raises(SpecError, match="unknown model"):
    SweepSpec(n=4, m=2, model="deep")
  with pytest.raises(SpecError, match="n must be even"):
    SweepSpec(n=5, m=2, data="correlated")
  with pytest.raises(SpecError, match="<= 0.5"):
    SweepSpec(n=4, m=2, data="anticorrelated", densities=(0.6,))
  with pytest.raises(SpecError, match="init scale must be > 0"):
    SweepSpec(n=4, m=2, init_scales=(0.0,))
  assert SweepSpec(n=4, m=8, model="abs").m == 8  # abs may have more neurons than features
  old = SweepSpec(n=4, m=2).to_dict()
  del old["weight_decays"]
  old["weight_decay"] = 0.05  # a result file written before the axis existed
  assert SweepSpec.from_dict(old).weight_decays == (0.05,)


def test_new_axis_values_reuse_the_program():
  """Other weight decay and init scale values (same lengths): no new trace, no compile."""
  make = lambda **kw: SweepSpec(n=3, m=2, activations=("relu",), **TINY, **kw)
  first, second = make(weight_decays=(0.0, 0.1), init_scales=(0.5, 2.0)), make(
      weight_decays=(0.3, 0.01), init_scales=(1.0, 4.0))
  layout = plan.make_plan(first, devices=jax.devices(), chunk_size=2)
  assert layout == plan.make_plan(second, devices=jax.devices(), chunk_size=2)
  program.grid_program(layout).lower(*sweep.program_inputs(first)).compile()
  with CompileEvents() as again:
    program.grid_program(layout).lower(*sweep.program_inputs(second)).compile()
  assert again.count(again.TRACE) == 0
