"""Registered model and data families, optimisers and the registry's cache keys.

A family registered from outside the package (plain functions, or a Flax module) trains
alone as inside a grid in one compiled call, its loss and gradient equal a hand-written
reference, its name reaches the CLI; re-registering a name never reuses a program or a
cached result of the old definition; a family that does not fit fails with one line
before anything is compiled.
"""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import superpos_jax as sj
from superpos_jax import optimizers
from superpos_jax import activations, cache, cli, data, families, flax_example, loss, model
from superpos_jax import plotting, results, spec as spec_module, sweep, train
from superpos_jax.spec import SpecError, SweepSpec
from tests.test_sweep import CompileEvents

TINY = dict(batch_size=32, eval_size=64, log_every=5, steps=10)


def _spec(**kw) -> SweepSpec:
  return SweepSpec(**dict(dict(n=4, m=2, activations=("relu",), densities=(0.3,)), **TINY, **kw))


@pytest.fixture(scope="module")
def layernorm():
  return flax_example.register()


# Two definitions per kind under one name: (register A, register B, spec field).
def _register_activation(fn):
  activations.register("mine", fn, "a test activation", overwrite=True)


def _register_model(apply):
  model.register_model("mine", apply, "a test model", overwrite=True)


def _register_data(fn):
  data.register_data("mine", fn, "a test data family", overwrite=True)


KINDS = {
    "activation": (_register_activation, jax.nn.relu, jnp.tanh, dict(activations=("mine",))),
    "model": (_register_model, model.bottleneck, model.privileged, dict(model="mine")),
    "data": (_register_data, data.independent, data.correlated, dict(data="mine")),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_overwrite_never_reuses_program_or_cached_result(kind, tmp_path):
  """Was a bug: "mine" re-registered as tanh after relu returned relu's weights bit for
  bit (the program was cached by name) and the cache digest ignored the function."""
  register, first, second, field = KINDS[kind]
  register(first)
  spec = _spec(**field)
  one = sweep.run(spec, progress=False)
  path = cache.path_for(str(tmp_path), "t", "cpu", spec)
  results.save(one, path)
  assert cache.load(path, spec)[0] is not None
  register(second)
  two = sweep.run(spec, progress=False)
  assert not np.allclose(one["W"], two["W"]), "the old definition's program was reused"
  assert cache.load(path, spec)[0] is None, "a result of the old definition was reused"
  register(first)  # the same code again: the digest is of the code, not of the object
  assert cache.load(path, spec)[0] is not None
  np.testing.assert_array_equal(sweep.run(spec, progress=False)["W"], one["W"])


def test_digest_sees_closed_over_values():
  """Two functions with the same code and other constants (`make_stretched_sigmoid`)."""
  digests = set()
  for eps in (0.1, 0.2):
    activations.register("mine", activations.make_stretched_sigmoid(eps), "d", overwrite=True)
    digests.add(_spec(activations=("mine",)).digest())
  assert len(digests) == 2


def test_flax_family_point_alone_equals_point_in_grid(layernorm, tmp_path):
  """A Flax module swept over activations x densities x seeds in ONE traced program; a
  point of it trains alone to the same numbers."""
  base = dict(n=6, m=3, model="layernorm", **TINY)
  grid = sweep.run(SweepSpec(activations=("relu", "tanh"), densities=(1.0, 0.1), seeds=(0, 1),
                             **base), progress=False)
  with CompileEvents() as events:  # other swept values: the same program, no new trace
    other = sweep.run(SweepSpec(activations=("relu", "tanh"), densities=(0.5, 0.2),
                                seeds=(2, 3), **base), progress=False)
  assert events.count(events.TRACE) == 0 and events.count(events.COMPILE) == 0
  assert not np.allclose(other["W"], grid["W"])
  point = dict(activation="tanh", density=0.1, seed=1)
  alone = sweep.run(SweepSpec(activations=("tanh",), densities=(0.1,), seeds=(1,), **base),
                    progress=False)
  chex.assert_trees_all_close(grid.sel(**point).data, alone.sel(**point).data,
                              rtol=1e-4, atol=1e-5)
  assert {"param_c", "param_LayerNorm_0.scale", "param_LayerNorm_0.bias"} <= set(grid.data)
  assert grid["param_c"].shape == grid.spec.grid_shape + (3,)
  assert grid.meta["families"]["model"]["flax_module"].endswith("HiddenLayerNormBottleneck")
  assert not np.allclose(grid.sel(**dict(point, seed=0))["W"], alone.sel(**point)["W"])
  # A file round trip keeps the family's own params; plots read W and b as for any model.
  path = results.save(grid, tmp_path / "layernorm.npz")
  loaded = results.load(path)
  np.testing.assert_array_equal(loaded["param_LayerNorm_0.scale"], grid["param_LayerNorm_0.scale"])
  assert "layernorm model" in plotting.figure_gram(loaded).get_suptitle()


def test_flax_family_trains_like_train_make_train(layernorm):
  """The grid's engine and the one-model trainer (`train.make_train`) agree for a Flax
  family, and its extra params come back by name."""
  spec = SweepSpec(n=6, m=3, model="layernorm", activations=("relu",), densities=(0.1,), **TINY)
  grid = sweep.run(spec, progress=False).squeeze()
  keys = sweep.point_keys(spec, *sweep.program_inputs(spec)[:4])
  trainer = train.make_train(spec, activations.get("relu"))
  out = jax.jit(trainer.train)(keys[0, 0], keys[0, 1], 0.1,
                               jnp.asarray(spec.importance_matrix()[0], jnp.float32), 1e-3, 0.01)
  np.testing.assert_allclose(grid["W"], out.W, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grid["param_c"], out.extra["c"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act_name", ["relu", "solu"])
def test_flax_family_loss_and_gradient(layernorm, act_name):
  """The module's engine loss and gradient against the model written out by hand."""
  rng = np.random.default_rng(0)
  n, m, B = 5, 3, 7
  params = model.init_params(jax.random.key(0), n, m, model="layernorm")
  params = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
  xs = jnp.asarray(rng.uniform(size=(n, B)) * (rng.uniform(size=(n, B)) < 0.6), jnp.float32)
  importance = jnp.asarray(0.8 ** np.arange(n), jnp.float32)
  act = activations.get(act_name).fn

  def reference(p):
    ln = p["LayerNorm_0"]
    outs = [flax_example.reference_forward(p["W"], p["c"], ln["scale"], ln["bias"], p["b"],
                                           xs[:, j], act) for j in range(B)]
    return sum(jnp.sum(importance * (xs[:, j] - o) ** 2) for j, o in enumerate(outs)) / B

  engine = jax.jit(jax.value_and_grad(
      lambda p: loss.family_loss(families.get("model", "layernorm"), p, xs, importance, act)))
  chex.assert_trees_all_close(engine(params), jax.value_and_grad(reference)(params),
                              rtol=1e-5, atol=1e-5)


def test_registry_choices_reach_the_cli():
  model.register_model("cli_model", model.privileged, "a model for the CLI", overwrite=True)
  data.register_data("cli_data", data.correlated, "data for the CLI", pairs=True, overwrite=True)
  parser = cli.experiment_parser("doc", {"paper": {}, "quick": {}})
  args = parser.parse_args(["--model", "cli_model", "--data", "cli_data"])
  assert (args.model, args.data) == ("cli_model", "cli_data")
  assert "a model for the CLI" in " ".join(parser.format_help().split())  # wrapped anywhere
  with pytest.raises(SystemExit):
    parser.parse_args(["--model", "not_registered"])
  spec = _spec(model="cli_model", data="cli_data")
  assert spec.model == "cli_model"
  with pytest.raises(SpecError, match="n must be even"):
    _spec(n=5, data="cli_data")


def _module(**kw):
  """A Flax bottleneck with one thing wrong (`kw`), for the error messages."""
  import flax.linen as nn

  class Bad(nn.Module):
    m: int

    @nn.compact
    def __call__(self, xs, act):
      n = xs.shape[0]
      W = self.param(kw.get("w_name", "W"), nn.initializers.zeros, (self.m, n),
                     kw.get("dtype", jnp.float32))
      b = self.param("b", kw.get("b_init", nn.initializers.zeros), (n,))
      out = act(W.T @ (W @ xs) + b[:, None])
      return out[:kw["rows"]] if "rows" in kw else out

  return Bad


@pytest.mark.parametrize("wrong,message", [
    (dict(rows=2), r"model family 'bad' must output float32 \[4, 64\]"),
    (dict(w_name="kernel"), r"model family 'bad' needs params W \[2, 4\] and b \[4\]"),
    (dict(dtype=jnp.bfloat16), r"model family 'bad': param W is bfloat16"),
    (dict(b_init=lambda *a: jnp.full((4,), jnp.nan)), r"model family 'bad' initialises to NaN"),
])
def test_bad_families_fail_in_one_line_before_compiling(wrong, message, monkeypatch):
  model.register_model("bad", _module(**wrong), "a bad model", overwrite=True)

  def compile_plan(plan):
    raise AssertionError("the grid was compiled before the family was checked")

  monkeypatch.setattr(sweep, "compile_plan", compile_plan)
  with pytest.raises(SpecError, match=message) as e:
    sweep.run(_spec(model="bad"), progress=False)
  assert "\n" not in str(e.value)


def test_bad_data_family_and_names_registered_twice():
  data.register_data("bad", lambda u, p: (u < p, u[:1]), "bad", overwrite=True)
  with pytest.raises(SpecError, match=r"data family 'bad' must map uniforms \[4, 64\]"):
    sweep.run(_spec(data="bad"), progress=False)
  for register in (lambda: model.register_model("bottleneck", model.bottleneck, "again"),
                   lambda: data.register_data("independent", data.independent, "again"),
                   lambda: optimizers.register_optimizer("adamw", optimizers.adamw, "again")):
    with pytest.raises(families.RegistryError, match="'(bottleneck|independent|adamw)' is "
                                                     "already registered"):
      register()


def test_optimizer_is_an_argument():
  """AdamW stays the default (a copy of it gives the same bits); another factory of the
  swept lr and weight decay trains differently, and an lr axis of it needs one program."""
  optimizers.register_optimizer("adamw_copy", lambda lr, wd: optax.adamw(lr, weight_decay=wd),
                           "AdamW again", overwrite=True)
  optimizers.register_optimizer("sgd", lambda lr, wd: optax.chain(
      optax.add_decayed_weights(wd), optax.sgd(lr)), "SGD with weight decay", overwrite=True)
  assert _spec().optimizer == "adamw"
  default, copy = (sweep.run(_spec(**kw), progress=False) for kw in ({}, dict(optimizer="adamw_copy")))
  np.testing.assert_array_equal(default["W"], copy["W"])
  sgd = sweep.run(_spec(optimizer="sgd", lrs=(0.1, 0.5)), progress=False)
  with CompileEvents() as events:
    sweep.run(_spec(optimizer="sgd", lrs=(0.2, 0.3)), progress=False)
  assert events.count(events.TRACE) == 0
  assert not np.allclose(sgd.sel(lr=0.1)["W"], default.sel(lr=1e-3)["W"])
  assert not np.allclose(sgd.sel(lr=0.1)["W"], sgd.sel(lr=0.5)["W"])
  with pytest.raises(SpecError, match="unknown optimizer 'nope'"):
    _spec(optimizer="nope")


def test_sel_lists_squeeze_and_the_documented_shapes():
  """The shapes `SweepResult.sel`'s docstring (and the README) give, for its own spec."""
  res = sweep.run(SweepSpec(n=10, m=5, activations=("relu", "tanh"),
                            densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2), **TINY), progress=False)
  assert res.sel(activation="relu", density=0.1)["W"].shape == (1, 1, 1, 1, 3, 5, 10)
  two = res.sel(activation=["tanh", "relu"], seed=0)
  assert two["W"].shape == (2, 3, 1, 1, 1, 1, 5, 10)
  assert list(two.coords["activation"]) == ["tanh", "relu"] and "seed" not in two.coords
  np.testing.assert_array_equal(two["W"][1, 1], res.sel(activation="relu", density=0.1,
                                                        seed=0)["W"])
  assert res.sel(activation=["relu", "tanh"]).squeeze()["W"].shape == (2, 3, 3, 5, 10)  # README
  squeezed = res.sel(activation="relu", density=0.1).squeeze()
  assert squeezed["W"].shape == (3, 5, 10) and squeezed.axes == ("seed",)
  assert res.sel(density=[0.1])["W"].shape == (2, 1, 1, 1, 1, 1, 3, 5, 10)


def test_the_package_exports():
  assert sj.SweepSpec is spec_module.SweepSpec and sj.run is sweep.run
  assert (sj.load, sj.save) == (results.load, results.save)
  assert sj.register_model is model.register_model and sj.register_data is data.register_data
  assert sj.register_activation is activations.register
  assert sj.register_optimizer is optimizers.register_optimizer
  with pytest.raises(AttributeError):
    sj.nothing_here  # noqa: B018


def test_digests_are_the_same_in_every_process():
  """A cached result is found again by a later process (hash randomisation differs)."""
  import os
  import subprocess
  import sys
  script = ("from superpos_jax import flax_example\nfrom superpos_jax.spec import SweepSpec\n"
            "flax_example.register()\nprint(SweepSpec(n=6, m=3).digest(), "
            "SweepSpec(n=6, m=3, model='layernorm', activations=('sigmoid_stretched',)).digest())")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  outs = {subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=repo, PYTHONHASHSEED=str(seed)),
                         timeout=120, check=True).stdout for seed in (1, 2)}
  assert len(outs) == 1
  assert outs.pop().split()[0] == SweepSpec(n=6, m=3).digest()


def test_a_family_with_a_third_parameter_and_an_optimiser_with_more_state(tmp_path):
  """Adding a family with a parameter of its own (a hidden gain `g [m]`) and an optimiser
  with more state (AdamW under `inject_hyperparams`) touches only the code that registers
  them: the grid trains, checkpoints and resumes, the result stores `param_g`, probes
  rebuild the family's own params from the result, and figures draw."""
  from superpos_jax import checkpoint, probes, summary_beyond

  def init(key, n, m, act):
    return {"W": jnp.zeros((m, n)), "b": jnp.zeros((n,)), "g": jnp.ones((m,))}

  def apply(params, xs, act):
    return act(params["W"].T @ (params["g"][:, None] * (params["W"] @ xs)) + params["b"][:, None])
  model.register_model("gained", apply, "x' = f(Wᵀ diag(g) W x + b)", init=init, overwrite=True)
  optimizers.register_optimizer("adamw_injected", lambda lr, wd: optax.inject_hyperparams(
      optax.adamw)(learning_rate=lr, weight_decay=wd), "AdamW, hyperparameters in its state",
      overwrite=True)
  try:
    spec = _spec(model="gained", optimizer="adamw_injected", densities=(0.3, 0.1), seeds=(0, 1))
    plain = sweep.run(spec, progress=False)
    assert plain["param_g"].shape == spec.grid_shape + (2,)
    assert not np.allclose(plain["param_g"], 1.0)
    folder = str(tmp_path / "ckpt")
    assert checkpoint.state_bytes(sweep.layout_for(spec)) > train.state_bytes(spec)[1]
    staged = sweep.run(spec, progress=False, checkpoint_dir=folder, checkpoint_every=0)
    again = sweep.run(spec, progress=False, checkpoint_dir=folder)
    for k in plain.data:
      np.testing.assert_array_equal(staged[k], plain[k], err_msg=k)
      np.testing.assert_array_equal(again[k], plain[k], err_msg=k)
    path = results.save(plain, tmp_path / "gained.npz")
    loaded = results.load(path)
    outs = probes.isolated_outputs(results.named_params(loaded), ["relu"], "gained",
                                   summary_beyond.PROBE_VALUES)
    assert outs.shape[-2:] == (4, len(summary_beyond.PROBE_VALUES)) and np.isfinite(outs).all()
    plotting.figure_gram(loaded)
  finally:
    families._MODELS.pop("gained")
    families._OPTIMIZERS.pop("adamw_injected")
