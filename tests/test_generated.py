"""Generated inputs (hypothesis): spec fields, every experiment's flags, registry calls,
result files and layouts.json contents, valid or damaged at random. Every case is either
accepted and works, or fails before training with ONE line (and exit status 2 on the
command line), never a traceback.

By default each test runs a few dozen cases (`cases`); with `--runslow`, 10,000 for the
spec fields, registry calls and result files, 2,000 layouts files, 500 flag sets per
experiment and 300 trained grids (tens of thousands in all).
"""

import importlib.util
import io
import json
import os
import sys
import zipfile

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from superpos_jax import optimizers
from superpos_jax import activations, autotune, cli, data, families, model, results, sweep, train
from superpos_jax import plan as plans
from superpos_jax.spec import SpecError, SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(REPO, "experiments")
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                     HealthCheck.too_slow])
RUNSLOW = bool(os.environ.get("SUPERPOS_JAX_RUNSLOW"))


def cases(default: int, slow: int = 10_000) -> settings:
  """`default` cases per test, `slow` with --runslow."""
  return settings(FAST, max_examples=slow if RUNSLOW else default)

junk = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                 st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**12),
                 st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.floats(1e-6, 1.0), st.sampled_from([0.0, -0.0, 1e-46, 1e39, 3.4e38]))
numbers = st.one_of(st.integers(-3, 40), floats, st.sampled_from(["1", True, np.float64(0.5)]))


def _axis(values):
  return st.one_of(st.lists(values, min_size=0, max_size=3), st.tuples(values), values,
                   st.text(max_size=3))


FIELDS = {
    "n": st.one_of(st.integers(-2, 12), junk), "m": st.one_of(st.integers(-2, 6), junk),
    "activations": _axis(st.sampled_from(["relu", "tanh", "solu", "nope", ""])),
    "densities": _axis(numbers), "importances": _axis(numbers), "lrs": _axis(numbers),
    "weight_decays": _axis(numbers), "init_scales": _axis(numbers),
    "seeds": _axis(st.one_of(st.integers(-2, 2**32), junk)),
    "steps": st.one_of(st.integers(-1, 50), junk), "batch_size": st.one_of(st.integers(-1, 64), junk),
    "log_every": st.one_of(st.integers(-1, 20), junk), "eval_size": st.one_of(st.integers(-1, 64), junk),
    "importance_kind": st.sampled_from(["geometric", "relative", "uniform", "explicit", "x", 3]),
    "init": st.sampled_from(["xavier_normal", "notebook", "normal", "zero", None]),
    "rng": st.sampled_from(["shared", "per_point", "x"]), "init_rng": st.sampled_from(["shared", "per_point", 1]),
    "model": st.sampled_from(["bottleneck", "privileged", "abs", "nope"]),
    "data": st.sampled_from(["independent", "correlated", "anticorrelated", "x"]),
    "optimizer": st.sampled_from(["adamw", "sgd"]),
    "phase_encoded": numbers, "phase_not_encoded": numbers, "bogus": junk,
}


def _one_line(e):
  text = str(e)
  assert text and "\n" not in text.strip(), repr(text)


@cases(40)
@given(st.fixed_dictionaries({}, optional=FIELDS))
def test_generated_spec_fields_give_a_spec_or_one_line(fields):
  """Any mix of fields: a valid spec (JSON round trip, digest, a plan) or a SpecError
  (an UnknownActivationError for an unknown activation name: `cli.run` makes both one
  line and exit 2)."""
  fields.setdefault("n", 4)
  fields.setdefault("m", 2)
  try:
    spec = SweepSpec(**fields)
  except (SpecError, activations.UnknownActivationError) as e:
    _one_line(e)
    return
  assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
  assert len(spec.digest()) == 16
  assume(spec.num_models <= 10**6)
  try:
    layout = plans.make_plan(spec, devices=jax.devices()[:1], max_memory=2**34)
  except SpecError as e:
    _one_line(e)
    return
  assert layout.chunk_index().max() < spec.num_models // len(spec.activations)


STATIC = dict(n=3, m=2, activations=("relu", "tanh"), steps=20, log_every=10, batch_size=32,
              eval_size=64)
positive = st.floats(1e-6, 10.0)


@cases(8, slow=300)
@given(densities=st.lists(st.one_of(st.floats(1e-6, 1.0), floats), min_size=2, max_size=2),
       lr=st.one_of(st.floats(1e-4, 10.0), floats), wd=st.one_of(st.floats(0, 1e3), floats),
       scale=st.one_of(positive, floats), seed=st.integers(0, 2**31 - 1))
def test_generated_swept_values_train_correctly(densities, lr, wd, scale, seed):
  """Specs of one static shape with generated swept values (one compiled program): an
  accepted spec trains; a model is flagged diverged exactly where its numbers are not
  finite; a point equals the same model trained alone (`train.make_train`), to float
  rounding where the learning rate keeps training stable (at lr 1 and above, rounding
  differences between a vmapped chunk and one model grow through training: found by
  --runslow at lr 1). A spec whose models start at a NaN/inf loss (a huge init scale) is
  refused in one line before compiling."""
  try:
    spec = SweepSpec(**STATIC, densities=densities, lrs=(lr,), weight_decays=(wd,),
                     init_scales=(scale,), seeds=(seed,))
  except SpecError as e:
    _one_line(e)
    return
  try:
    res = sweep.run(spec, progress=False)
  except SpecError as e:
    assert "NaN/inf" in str(e), e
    _one_line(e)
    return
  bad = ~np.isfinite(res["W"]).all((-2, -1)) | ~np.isfinite(res["loss_history"]).all(-1)
  np.testing.assert_array_equal(res["diverged"], bad)
  np.testing.assert_array_equal(np.isnan(res["eval_loss"]), res["diverged"])
  keys = sweep.point_keys(spec, *sweep.program_inputs(spec)[:4])
  trainer = train.make_train(spec, activations.get("tanh"))
  alone = jax.jit(trainer.train)(keys[1, 0], keys[1, 1], np.float32(spec.densities[1]),
                                 spec.importance_matrix()[0].astype(np.float32),
                                 np.float32(lr), np.float32(wd), np.float32(scale))
  grid = res.sel(activation="tanh", density=spec.densities[1]).squeeze()
  if not grid["diverged"] and lr <= 0.1:
    np.testing.assert_allclose(grid["W"], alone.W, rtol=1e-4, atol=1e-5)


def _module(name):
  if EXPERIMENTS not in sys.path:
    sys.path.insert(0, EXPERIMENTS)
  spec = importlib.util.spec_from_file_location(f"generated_{name}", os.path.join(EXPERIMENTS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


SCRIPTS = sorted(f[:-3] for f in os.listdir(EXPERIMENTS) if f.endswith(".py"))


class TrainingStarted(Exception):
  """Raised where a program would run: the input got through every check."""


def _flag_values(action):
  """Values to try for one flag: valid ones and junk."""
  if action.nargs == 0:
    return st.just([])
  choices = [str(c) for c in action.choices or ()]
  tokens = st.one_of(st.sampled_from(choices or ["1"]), st.sampled_from(
      ["0", "-1", "2", "5", "nan", "inf", "1e39", "0.5,0.1", "relu,tanh", "relu,,x", ",", "", "x",
       "2147483648", "0.3", "1,1", "auto", "-0.5"]), st.text(max_size=4))
  return tokens.map(lambda t: [t])


@pytest.fixture
def no_training(monkeypatch, tmp_path):
  """Training (the grid's program, its stages, the SAE stage's) stops the run with
  `TrainingStarted`; HOME and the caches point into tmp_path."""
  def stop(*a, **k):
    raise TrainingStarted()
  monkeypatch.setattr(sweep, "compile_plan", stop)
  monkeypatch.setattr(sweep, "run_staged", stop)
  monkeypatch.setattr(autotune, "measure", lambda layout, *window: float(layout.chunk_size))
  monkeypatch.setenv("SUPERPOS_JAX_CACHE", str(tmp_path / "cache"))
  return tmp_path


@pytest.mark.parametrize("script", SCRIPTS)
def test_generated_flags_fail_in_one_line_or_reach_training(script, no_training, capsys):
  """Every experiment's flags, generated: the run either reaches training (its input got
  through every check) or ends with exit status 2 and one line on stderr."""
  module = _module(script)
  parser = module.PARSER if hasattr(module, "PARSER") else module._parser()
  actions = [a for a in parser._actions if a.option_strings and a.dest not in (
      "help", "out", "figures", "coordinator", "num_processes", "process_id", "heartbeat_timeout")]
  flags = (st.lists(st.sampled_from(actions), max_size=4) if actions else st.just([])).flatmap(
      lambda acts: st.tuples(*[_flag_values(a).map(lambda v, a=a: [a.option_strings[-1], *v])
                               for a in acts]))

  @cases(6 if script != "reproduce_all" else 3, slow=500)
  @given(flags)
  def check(chosen):
    argv = [x for pair in chosen for x in pair]
    argv += ["--out", str(no_training / "out"), "--figures", str(no_training / "fig"), "--quiet"]
    if script == "input_batches":
      argv = [a for a in argv if a not in ("--out", str(no_training / "out"))]
    capsys.readouterr()
    try:
      status = cli.run(module.main, argv)
    except TrainingStarted:
      return
    except SystemExit as e:  # argparse: one line, status 2
      status = e.code
    err = capsys.readouterr().err.strip()
    if status == 0:
      assert script == "input_batches", err  # draws a picture, trains nothing
      return
    assert status == 2, (argv, status, err)
    assert err.startswith("error:") and "\n" not in err, (argv, err)

  check()


name = st.one_of(st.sampled_from(["probe", "probe_2"]), st.text(max_size=4), junk)
callables = st.one_of(st.sampled_from([jax.nn.relu, model.bottleneck, data.independent]), junk)
text = st.one_of(st.sampled_from(["ok", "two\nlines", ""]), junk)
flag = st.one_of(st.booleans(), junk)


@cases(40)
@given(kind=st.sampled_from(["activation", "model", "data", "optimizer"]), name=name,
       fn=callables, description=text, options=st.fixed_dictionaries({}, optional={
           "per_example": flag, "signed": flag, "wide": flag, "pairs": flag,
           "max_density": numbers, "draw": st.one_of(st.just(("W",)), junk),
           "version": st.one_of(st.none(), st.text(max_size=3), junk), "overwrite": flag}))
def test_generated_registry_calls_register_or_fail_in_one_line(kind, name, fn, description, options):
  """A registration either succeeds, leaving an entry whose metadata a result can record,
  or raises one line (RegistryError / ValueError), never anything else."""
  allowed = {"activation": {"per_example", "version", "overwrite"},
             "model": {"signed", "wide", "draw", "version", "overwrite"},
             "data": {"pairs", "max_density", "version", "overwrite"},
             "optimizer": {"version", "overwrite"}}[kind]
  kw = {k: v for k, v in options.items() if k in allowed}
  kw["overwrite"] = kw.get("overwrite", True) if isinstance(name, str) and name.startswith("probe") else False
  register = {"activation": activations.register, "model": model.register_model,
              "data": data.register_data, "optimizer": optimizers.register_optimizer}[kind]
  registry = activations._REGISTRY if kind == "activation" else families._KINDS[kind]
  before = dict(registry)
  try:
    entry = register(name, fn, description, **kw)
  except (families.RegistryError, ValueError) as e:
    _one_line(e)
    assert registry == before
    return
  finally:
    accepted = dict(registry)
    registry.clear()
    registry.update(before)
  assert entry.name in accepted and isinstance(entry.description, str)
  json.dumps({"description": entry.description, "version": entry.version})


@pytest.fixture(scope="module")
def result_bytes(tmp_path_factory):
  res = sweep.run(SweepSpec(**STATIC, densities=(1.0, 0.1), seeds=(0, 1)), progress=False)
  path = results.save(res, tmp_path_factory.mktemp("r") / "res.npz")
  with open(path, "rb") as f:
    return f.read()


def _entries(raw):
  with zipfile.ZipFile(io.BytesIO(raw)) as z:
    return {n: z.read(n) for n in z.namelist()}


def _zip(entries):
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    for n, b in entries.items():
      z.writestr(n, b)
  return buf.getvalue()


def _npy(value):
  buf = io.BytesIO()
  np.save(buf, value)
  return buf.getvalue()


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5),
                                     st.floats(allow_nan=False), st.text(max_size=4)),
                           lambda c: st.one_of(st.lists(c, max_size=3),
                                               st.dictionaries(st.text(max_size=4), c, max_size=3)),
                           max_leaves=8)


@st.composite
def damaged(draw, raw):
  """A result file damaged one of several ways: bytes, entries, metadata, arrays."""
  how = draw(st.sampled_from(["bytes", "truncate", "drop", "meta", "array"]))
  if how == "bytes":
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 8))):
      data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)
  if how == "truncate":
    return raw[:draw(st.integers(0, len(raw) - 1))]
  entries = _entries(raw)
  names = sorted(entries)
  if how == "drop":
    entries.pop(draw(st.sampled_from(names)))
    return _zip(entries)
  if how == "meta":
    meta = json.loads(np.load(io.BytesIO(entries["meta.npy"])).item())
    path = draw(st.lists(st.sampled_from(sorted(meta)), min_size=1, max_size=1))
    sub = meta[path[0]]
    if isinstance(sub, dict) and sub and draw(st.booleans()):
      sub[draw(st.sampled_from(sorted(sub)))] = draw(json_values)
    else:
      meta[path[0]] = draw(json_values)
    entries["meta.npy"] = _npy(np.asarray(json.dumps(meta)))
    return _zip(entries)
  name = draw(st.sampled_from([n for n in names if n != "meta.npy"]))
  value = draw(st.sampled_from([np.zeros(()), np.zeros((1, 1, 1)), np.asarray(["a"]),
                                np.arange(3, dtype=np.int8), np.zeros((0,)),
                                np.full((2, 3), np.nan)]))
  entries[name] = _npy(value)
  return _zip(entries)


@cases(30)
@given(data=st.data())
def test_generated_damaged_result_files_load_or_raise_result_file_error(data, result_bytes, tmp_path):
  """A damaged result file either loads (then selection, seeds' reduction and the summary
  line work) or raises `ResultFileError` with one line."""
  path = tmp_path / "damaged.npz"
  path.write_bytes(data.draw(damaged(result_bytes)))
  try:
    res = results.load(path)
  except results.ResultFileError as e:
    _one_line(e)
    return
  results.summary(res)
  res.reduce_seeds("best")
  res.sel(activation=str(res.coords["activation"][0]))


@cases(15, slow=2000)
@given(content=st.one_of(st.binary(max_size=40), json_values.map(json.dumps),
                         st.dictionaries(st.just("KEY"), json_values).map(json.dumps),
                         st.fixed_dictionaries({"KEY": st.fixed_dictionaries(
                             {"chunk_size": numbers, "span_seeds": st.one_of(st.booleans(), junk)})}
                         ).map(json.dumps)))
def test_generated_layouts_files_never_break_a_run(content, tmp_path_factory, monkeypatch):
  """Whatever `layouts.json` holds, `--chunk-size auto` gives a valid layout within the
  budget (measured again where the file or its entry is damaged)."""
  folder = tmp_path_factory.mktemp("cache")
  monkeypatch.setenv("SUPERPOS_JAX_CACHE", str(folder))
  monkeypatch.setattr(autotune, "measure", lambda layout, *window: float(layout.chunk_size))
  spec = SweepSpec(**STATIC, densities=(1.0, 0.5, 0.1, 0.05))
  devices = jax.devices()[:1]
  key = autotune.layout_key(spec, devices, "float32")
  raw = content if isinstance(content, bytes) else content.replace("KEY", key).encode()
  (folder / "layouts.json").write_bytes(raw)
  budget = plans.make_plan(spec, devices=devices, chunk_size=2).estimated_bytes
  layout = autotune.autotune(spec, devices, max_memory=budget)
  assert 1 <= layout.chunk_size and layout.estimated_bytes <= budget
