"""Regression tests, one per way a guarantee of docs/robustness.md once broke a step off
the tested path (issue "Every guarantee on every path"): the optimiser's state, the
identity, the custom-run rule, the result schema, bad input."""

import argparse
import dataclasses
import json
import os
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from superpos_jax import optimizers
from superpos_jax import activations, autotune, cli, families, model, provenance, results
from superpos_jax import sweep
from superpos_jax.spec import SpecError, SweepSpec
from test_faults import load_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(n=4, m=2, activations=("relu",), densities=(0.3,), batch_size=32, eval_size=64,
            log_every=5, steps=10)


def _spec(**kw):
  return SweepSpec(**dict(TINY, **kw))


# -- the optimiser's state is made with the point's own hyperparameters ------------------

def test_optimizer_state_holds_each_points_hyperparameters():
  """Was a bug: the state was initialised with lr = 1, weight decay = 0, so an optimiser
  that keeps its hyperparameters in its state (`optax.inject_hyperparams`) trained every
  point at lr 1. Now a grid of two lrs under it equals plain AdamW at each lr."""
  optimizers.register_optimizer(
      "injected", lambda lr, wd: optax.inject_hyperparams(optax.adamw)(
          learning_rate=lr, weight_decay=wd), "adamw, hyperparameters in its state",
      overwrite=True)
  try:
    injected = sweep.run(_spec(lrs=(1e-3, 3e-2), optimizer="injected"), progress=False)
    plain = sweep.run(_spec(lrs=(1e-3, 3e-2)), progress=False)
    np.testing.assert_allclose(injected["W"], plain["W"], rtol=1e-5, atol=1e-7)
    assert not np.allclose(injected["W"][0, 0, 0, 0], injected["W"][0, 0, 0, 1])
  finally:
    families._OPTIMIZERS.pop("injected")


# -- one identity, complete ----------------------------------------------------------------

def _register_module(cls):
  model.register_model("probe", cls, "a probe family", overwrite=True)
  return provenance.code_digest(families.get("model", "probe"))


def test_identity_sees_flax_field_defaults():
  def make(scale):
    class Scaled(nn.Module):
      m: int
      gain: float = scale

      @nn.compact
      def __call__(self, xs, act):
        W = self.param("W", nn.initializers.zeros, (self.m, xs.shape[0]))
        b = self.param("b", nn.initializers.zeros, (xs.shape[0],))
        return act(self.gain * W.T @ (W @ xs) + b[:, None])
    return Scaled
  try:
    assert _register_module(make(1.0)) != _register_module(make(2.0))
    assert _register_module(make(1.0)) == _register_module(make(1.0))
  finally:
    families._MODELS.pop("probe")


def test_identity_sees_helpers_called_through_a_module():
  helpers = types.ModuleType("user_helpers")
  helpers.gain = lambda z: 2.0 * z
  sys.modules["user_helpers"] = helpers
  namespace = {"helpers": helpers, "jnp": jnp}
  exec("def act(z):\n  return helpers.gain(z)\n", namespace)
  try:
    activations.register("probe", namespace["act"], "through a module", overwrite=True)
    before = _spec(activations=("probe",)).digest()
    helpers.gain = lambda z: 3.0 * z
    assert _spec(activations=("probe",)).digest() != before
  finally:
    activations._REGISTRY.pop("probe")
    sys.modules.pop("user_helpers")


def test_identity_sees_library_closures():
  """`nn.initializers.normal(0.5)` and `normal(2.0)` are one library function with
  another closed-over value: other numbers, other digests."""
  digests = set()
  for std in (0.5, 2.0):
    init = nn.initializers.normal(std)
    model.register_model("probe", model.bottleneck, "normal bias",
                         init=lambda key, n, m, act, init=init: model.Params(
                             W=jnp.zeros((m, n)), b=init(key, (n,))), overwrite=True)
    digests.add(_spec(model="probe").digest())
  families._MODELS.pop("probe")
  assert len(digests) == 2


def test_identity_holds_flax_version_and_jax_settings(monkeypatch):
  ident = _spec().identity()
  assert set(provenance.NUMERIC_PACKAGES) <= set(ident["versions"]) and "flax" in ident["versions"]
  base = _spec().digest()
  for name, value in (("jax_default_prng_impl", "rbg"), ("jax_threefry_partitionable", False)):
    with jax.config.update_context(name, value) if hasattr(jax.config, "update_context") else \
        _setting(name, value):
      assert _spec().digest() != base, name
      assert name in provenance.mismatch(ident, _spec().identity())
  assert _spec().digest() == base


class _setting:
  """A JAX setting changed for a `with` block."""

  def __init__(self, name, value):
    self.name, self.value = name, value

  def __enter__(self):
    self.old = getattr(jax.config, self.name)
    jax.config.update(self.name, self.value)

  def __exit__(self, *exc):
    jax.config.update(self.name, self.old)


def test_identity_sees_an_explicit_version():
  activations.register("probe", jax.nn.relu, "v1", version="1", overwrite=True)
  one = _spec(activations=("probe",)).digest()
  activations.register("probe", jax.nn.relu, "v2", version="2", overwrite=True)
  try:
    assert _spec(activations=("probe",)).digest() != one
  finally:
    activations._REGISTRY.pop("probe")


def test_a_mismatch_names_its_cause():
  ident = _spec().identity()
  other = _spec(densities=(0.2,)).identity()
  assert provenance.mismatch(ident, other) == "it is of another spec (densities)"
  edited = dict(ident, versions=dict(ident["versions"], optax="0.0.1"))
  assert "optax '0.0.1' vs" in provenance.mismatch(edited, ident)
  assert "older superpos_jax" in provenance.mismatch({"spec": {}}, ident)


# -- nothing finished is lost ---------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(description=["not", "a", "line"]), "description must be one line"),
    (dict(description="two\nlines"), "description must be one line"),
    (dict(signed="no"), "signed must be True or False"),
    (dict(wide=1), "wide must be True or False"),
    (dict(draw="W"), "draw must be a tuple of names"),
    (dict(version=3), "version must be a string"),
])
def test_registration_rejects_what_a_result_could_not_record(kwargs, message):
  """Was a bug: a family whose description could not be written to JSON lost its trained
  result at save time; strings passed for booleans were accepted."""
  kw = dict(description="ok")
  kw.update(kwargs)
  with pytest.raises(families.RegistryError, match=message):
    model.register_model("probe", model.bottleneck, kw.pop("description"), **kw)
  assert "probe" not in families.names("model")


def test_registry_calls_refuse_strings_for_numbers_and_booleans():
  from superpos_jax import data
  with pytest.raises(families.RegistryError, match="max_density"):
    data.register_data("probe", data.independent, "d", max_density="0.5")
  with pytest.raises(families.RegistryError, match="overwrite must be True or False"):
    data.register_data("independent", data.independent, "d", overwrite="yes")
  with pytest.raises(ValueError, match="per_example must be True or False"):
    activations.register("probe", jax.nn.relu, "d", per_example="False")


def test_a_parameter_named_like_a_metric_never_replaces_it():
  """Was a bug: a family parameter named `eval_loss` silently replaced the metric."""
  def init(key, n, m, act):
    return {"W": jnp.zeros((m, n)), "b": jnp.zeros((n,)), "eval_loss": jnp.ones((n,))}

  def apply(params, xs, act):
    return act(params["W"].T @ (params["W"] @ xs) + params["b"][:, None] * params["eval_loss"][:, None])
  model.register_model("probe", apply, "a parameter named eval_loss", init=init, overwrite=True)
  try:
    res = sweep.run(_spec(model="probe"), progress=False)
  finally:
    families._MODELS.pop("probe")
  assert res["eval_loss"].shape == res.spec.grid_shape
  assert res["param_eval_loss"].shape == res.spec.grid_shape + (4,)


def _script(script, prefix):
  if os.path.join(REPO, "experiments") not in sys.path:  # the scripts import each other
    sys.path.insert(0, os.path.join(REPO, "experiments"))
  return load_experiment(os.path.join(REPO, "experiments", f"{script}.py"), f"{prefix}_{script}")


def _parser_of(script):
  module = _script(script, "custom_rule")
  parser = getattr(module, "PARSER", None) or (module._parser() if hasattr(module, "_parser") else None)
  return parser if isinstance(parser, cli.ArgumentParser) and "preset" in {
      a.dest for a in parser._actions} else None


SCRIPTS = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "experiments"))
                 if f.endswith(".py") and f != "input_batches.py")


def _value_for(action):
  """A non-default value argparse accepts for `action`."""
  if action.nargs == 0:
    return []
  if action.choices:
    return [next(str(c) for c in action.choices if c != action.default)]
  if action.type in (cli.float_list,):
    return ["0.5,0.25"]
  if action.type is cli.name_list:
    return ["relu"]
  return ["3"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_but_where_and_how_to_run_makes_a_custom_run(script):
  """Was a bug: a paper run overridden with --model, --data, --weight-decays or
  --init-scales wrote into the committed figures/ (they were missing from a hand list).
  Now every flag not declared as where/how to run makes the run custom."""
  parser = _parser_of(script)
  if parser is None:
    pytest.skip(f"{script} is not a training experiment (no experiment_parser)")
  paper = cli.figures_dir(parser.parse_args([]))
  assert paper == os.path.join(cli.REPO, "figures")
  spec_flags = [a for a in parser._actions
                if a.option_strings and a.dest not in parser.run_dests]
  assert {"model", "data", "weight_decays", "init_scales"} <= {a.dest for a in spec_flags}
  for action in spec_flags:
    args = parser.parse_args([action.option_strings[-1], *_value_for(action)])
    assert cli.figures_dir(args) != paper, action.option_strings
  for action in parser._actions:
    if action.dest in parser.run_dests and action.option_strings and action.dest not in (
        "help", "preset", "figures"):
      args = parser.parse_args([action.option_strings[-1], *_value_for(action)])
      assert cli.figures_dir(args) == paper, action.option_strings


# -- bad input fails before training, in one line --------------------------------------------

@pytest.mark.parametrize("every", ["10", float("nan"), -1.0, True, None, float("inf")])
def test_checkpoint_every_is_checked_before_training(every, tmp_path, monkeypatch):
  """Was a bug: `run(checkpoint_every="10")` raised a TypeError after a stage had trained."""
  monkeypatch.setattr(sweep, "stage_programs", lambda *a: pytest.fail("training started"))
  with pytest.raises(SpecError, match="checkpoint_every must be a number of seconds"):
    sweep.run(_spec(), progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=every)


@pytest.mark.parametrize("script, n", [("feature_matrices", 10), ("phase_diagram", 2)])
def test_a_family_that_cannot_initialise_fails_in_one_line(script, n, tmp_path, capsys):
  """Was a bug (found by the generated flags): a registered model whose init works at one
  size and not at another raised a traceback from the memory estimate, before the
  families were checked. Now it is one line, exit 2, before training."""

  class FixedBias(nn.Module):
    m: int

    @nn.compact
    def __call__(self, xs, act):
      W = self.param("W", nn.initializers.normal(0.1), (self.m, xs.shape[0]))
      b = self.param("b", nn.initializers.zeros, (4,))  # right only at n = 4
      return act(W.T @ (W @ xs) + b[:, None])

  model.register_model("fixed_bias", FixedBias, "a bias of 4 features", overwrite=True)
  try:
    status = cli.run(_script(script, "fixed_bias").main, ["--preset", "quick", "--model", "fixed_bias", "--out",
                                   str(tmp_path), "--no-plot", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err, err
    assert err.startswith("error: model family 'fixed_bias'") and f"n={n}" in err, err
  finally:
    families._MODELS.pop("fixed_bias")


@pytest.mark.parametrize("field, value", [("lrs", (1e39,)), ("init_scales", (1e-50,)),
                                          ("weight_decays", (3.5e38,)), ("densities", (float("nan"),))])
def test_values_that_float32_cannot_hold_are_refused(field, value):
  """Was a bug: floats were checked in float64 and ran in float32 (`lrs=(1e39,)` became inf)."""
  with pytest.raises(SpecError):
    _spec(**{field: value})


def test_sel_never_returns_a_neighbouring_point():
  """Was a bug: `sel` matched floats at rtol 1e-6 and could return the wrong point."""
  coords = {"density": np.asarray([1.0, 1.0000005])}
  res = results.SweepResult(coords=coords, data={"x": np.asarray([10, 20])}, extra={}, meta={})
  assert res.index("density", 1.0000005) == 1 and res.index("density", 1.0) == 0
  with pytest.raises(KeyError, match="within 1e-6 of several values"):
    res.index("density", 1.0000002)
  res = results.SweepResult(coords={"density": np.asarray([0.1, 0.3])}, data={}, extra={}, meta={})
  assert res.index("density", 0.30000001) == 1  # fewer digits still find their one value


def _layouts(tmp_path, content):
  (tmp_path / "layouts.json").write_text(content)


@pytest.mark.parametrize("content", [
    "{not json", "[1, 2]", '{"KEY": {"chunk_size": "x", "span_seeds": false}}',
    '{"KEY": {"chunk_size": -3, "span_seeds": false}}', '{"KEY": {"chunk_size": 4}}',
    '{"KEY": 7}'])
def test_a_damaged_layouts_file_is_measured_again(content, tmp_path, monkeypatch, capfd):
  """Was a bug: a damaged `layouts.json` entry gave a KeyError, or a persistent error
  naming a flag the user never passed."""
  monkeypatch.setenv("SUPERPOS_JAX_CACHE", str(tmp_path))
  monkeypatch.setattr(autotune, "measure", lambda layout, *window: float(layout.chunk_size))
  spec, devices = _spec(densities=(0.1, 0.2, 0.3, 0.4)), jax.devices()[:1]
  key = autotune.layout_key(spec, devices, "float32")
  _layouts(tmp_path, content.replace("KEY", key))
  layout = autotune.autotune(spec, devices)
  assert layout.autotuned["remembered"] is False
  assert json.loads((tmp_path / "layouts.json").read_text())[key]["chunk_size"] == layout.chunk_size


def test_a_remembered_layout_over_the_budget_falls_back(tmp_path, monkeypatch):
  """Was a bug: a remembered autotuned layout ignored --max-memory and refused a run that
  fits. Now the default layout within the budget is used."""
  monkeypatch.setenv("SUPERPOS_JAX_CACHE", str(tmp_path))
  monkeypatch.setattr(autotune, "measure", lambda layout, *window: float(layout.chunk_size))
  spec, devices = _spec(densities=tuple(np.linspace(0.1, 1.0, 16))), jax.devices()[:1]
  big = autotune.autotune(spec, devices)
  budget = max(1, sweep.make_plan(spec, devices=devices, chunk_size=1).estimated_bytes)
  small = autotune.autotune(spec, devices, max_memory=budget)
  assert small.chunk_size < big.chunk_size and small.estimated_bytes <= budget
  assert small.autotuned["over_budget"]


def test_heartbeat_timeout_needs_a_coordinator():
  """Was a bug: --heartbeat-timeout without --coordinator was ignored without a word."""
  args = argparse.Namespace(out="x", figures=None, densities=None, activations=None,
                            no_checkpoint=False, checkpoint_every=None, coordinator=None,
                            num_processes=None, process_id=None, heartbeat_timeout=5)
  with pytest.raises(cli.UserError, match="--heartbeat-timeout given without --coordinator"):
    cli.check_flags(args)


@pytest.mark.parametrize("damage", [
    lambda meta, res: (meta.update(axes=None), res.coords.pop("seed")),  # was a TypeError
    lambda meta, res: meta.update(spec=[1]), lambda meta, res: meta["spec"].update(n="four"),
    lambda meta, res: res.coords.update(density=np.zeros((1, 1))),
    lambda meta, res: res.extra.update(history_steps=np.asarray(3)),
])
def test_malformed_result_files_raise_result_file_error(damage, tmp_path):
  """Was a bug: some malformed result files raised a TypeError instead."""
  res = sweep.run(_spec(), progress=False)
  res = dataclasses.replace(res, coords=dict(res.coords), extra=dict(res.extra),
                            meta=json.loads(json.dumps(res.meta)))
  damage(res.meta, res)
  path = tmp_path / "bad.npz"
  arrays = {f"coord_{a}": v for a, v in res.coords.items()} | res.data | res.extra
  np.savez(path, meta=np.asarray(json.dumps(dict(res.meta, schema_version=1))), **arrays)
  with pytest.raises(results.ResultFileError):
    results.load(path)
