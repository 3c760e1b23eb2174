"""The sweep engine: spec validation, result layout, equivalence, compile-once, learning."""

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superpos_jax import program
from superpos_jax import activations, metrics, plan, results, sweep, train
from superpos_jax.spec import SpecError, SweepSpec

TINY = dict(batch_size=64, eval_size=256, log_every=10)
# Last key word of each (init, data) key of `test_default_keys_are_those_of_before_shared_starts`'s
# points, from the engine before lr, weight decay and init scale shared a start.
EXPECTED_KEY_WORDS = [[980956775, 4184770603], [3712853313, 3845410133],
                      [2177731857, 665431488], [3549066225, 932410570]]

# One grid with every axis longer than 1, and a diverging learning rate (1e6: AdamW's
# decoupled weight decay multiplies W by 1 - lr*wd = -9999 per step) beside a sane one.
GRID = dict(n=5, m=2, activations=("relu", "tanh"), densities=(1.0, 0.1, 0.01),
            importances=(0.7, 0.9), lrs=(1e-2, 1e6), seeds=(0, 1), steps=25, **TINY)
# A point of GRID, trained alone.
# The axes a study grid leaves at their single default value.
SETTINGS = dict(weight_decay=0.01, init_scale=1.0)
POINT = dict(activation="tanh", density=0.1, importance=0.9, lr=1e-2, seed=1, **SETTINGS)


def _alone(rng):
  return SweepSpec(**dict(GRID, activations=(POINT["activation"],),
                                densities=(POINT["density"],), importances=(POINT["importance"],),
                                lrs=(POINT["lr"],), seeds=(POINT["seed"],), rng=rng))


@pytest.fixture(scope="module", params=["shared", "per_point"])
def grid_and_alone(request):
  rng = request.param
  grid = sweep.run(SweepSpec(**dict(GRID, rng=rng)))
  alone = sweep.run(_alone(rng))
  return rng, grid, alone


@pytest.fixture(scope="module")
def grid(grid_and_alone):
  return grid_and_alone[1]


# ---------------------------------------------------------------------------- validation

def _spec(**kw):
  return SweepSpec(**dict(dict(n=5, m=2, steps=20, **TINY), **kw))


@pytest.mark.parametrize("kw, field", [
    (dict(steps=-1), "steps"),
    (dict(steps=0), "steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(densities=(0.5, 0.0)), "density"),
    (dict(densities=(1.5,)), "density"),
    (dict(densities=(float("nan"),)), "density"),
    (dict(importance_kind="explicit", importances=(1.0,),
          importance_vectors=((1.0, 0.5, 0.0, 0.2, 0.1),)), "importance"),
    (dict(importances=(-0.5,)), "importance"),
    (dict(importance_kind="explicit", importances=(1.0,), importance_vectors=((1.0, 0.5),)),
     "importance vector"),
    (dict(importance_kind="uniform", importances=(0.7,)), "uniform"),
    (dict(importance_vectors=((1.0,) * 5,)), "importance_vectors"),
    (dict(n=2, m=3), "m must be <= n"),
    (dict(init="kaiming"), "init"),
    (dict(rng="fresh"), "rng"),
    (dict(importance_kind="zipf"), "importance_kind"),
    (dict(lrs=(0.0,)), "learning rate"),
    (dict(seeds=(-1,)), "seeds"),
    (dict(activations=()), "activations"),
    (dict(densities=()), "densities"),
    (dict(importances=()), "importances"),
    (dict(lrs=()), "lrs"),
    (dict(seeds=()), "seeds"),
    (dict(activations=("relu", "tanh", "relu")), "activations must be distinct"),
    (dict(phase_encoded=0.1, phase_not_encoded=0.5), "phase"),
])
def test_bad_spec_raises_naming_the_field(kw, field):
  """Each invalid spec raises SpecError whose message names the offending field."""
  with pytest.raises(SpecError, match=field):
    _spec(**kw)


def test_unknown_activation_in_spec():
  """An unknown activation raises UnknownActivationError listing the valid names."""
  with pytest.raises(activations.UnknownActivationError, match="valid names:.*relu"):
    _spec(activations=("relu", "swishh"))


def test_spec_accepts_lists_and_stays_hashable():
  """Lists are stored as tuples (hashable, usable as a cache key); from_dict round-trips."""
  spec = _spec(densities=[1.0, 0.1], seeds=[0, 1])
  assert spec.densities == (1.0, 0.1) and spec.seeds == (0, 1)
  hash(spec)
  assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_numpy_integer_seeds_are_json_safe():
  """seeds=np.arange(k), which validate() allows, are stored as ints: digest and JSON work.

  Was a bug: np.int64 seeds stayed in the spec and broke json.dumps in digest()/save.
  """
  spec = _spec(seeds=np.arange(3))
  assert spec.seeds == (0, 1, 2)
  assert all(type(s) is int for s in spec.seeds)
  assert spec.digest() == _spec(seeds=(0, 1, 2)).digest()
  json.dumps(spec.to_dict())


def test_numpy_integer_sizes_are_json_safe():
  """n, m, steps given as numpy integers (e.g. from np.arange) give a usable spec."""
  spec = _spec(n=np.int64(5), m=np.int64(2), steps=np.int64(20))
  assert spec.digest() == _spec().digest()


def test_float32_densities_are_accepted():
  """densities given as a float32 array (in range) are valid and stored as floats.

  Was a bug: np.float32 values failed isinstance(d, float) and were rejected.
  """
  spec = _spec(densities=np.asarray([0.5, 0.1], np.float32), lrs=np.asarray([1e-2], np.float32))
  assert all(type(d) is float for d in spec.densities + spec.lrs)
  np.testing.assert_allclose(spec.densities, [0.5, 0.1], rtol=1e-7, atol=0)
  json.dumps(spec.to_dict())


# ---------------------------------------------------------------------------- layout

def test_result_shapes(grid):
  """Every array has the grid shape (A, D, I, L, WD, AL, S) first, then its per-model shape."""
  spec = SweepSpec(**GRID)
  g = spec.grid_shape
  assert g == (2, 3, 2, 2, 1, 1, 2)
  n, m, T = 5, 2, 3
  per_model = {"W": (m, n), "b": (n,), "loss_history": (T,), "final_loss": (), "eval_loss": (),
               "diverged": (), "feature_norms": (n,), "superposition": (n,),
               "feature_dimensionality": (n,), "dims_per_feature": ()}
  assert set(grid.data) == set(per_model)  # no "phase" for n != 2
  for k, shape in per_model.items():
    chex.assert_shape(grid.data[k], g + shape)
  assert grid.data["diverged"].dtype == bool
  chex.assert_shape(grid.extra["importance_vectors"], (2, n))
  np.testing.assert_allclose(grid.extra["importance_vectors"][1], 0.9 ** np.arange(n),
                             rtol=1e-12, atol=0)


def test_coords(grid):
  """coords hold the spec's axis values, in the spec's order."""
  assert list(grid.coords) == list(results.AXES)
  np.testing.assert_array_equal(grid.coords["activation"], ["relu", "tanh"])
  np.testing.assert_array_equal(grid.coords["density"], [1.0, 0.1, 0.01])
  np.testing.assert_array_equal(grid.coords["importance"], [0.7, 0.9])
  np.testing.assert_array_equal(grid.coords["lr"], [1e-2, 1e6])
  np.testing.assert_array_equal(grid.coords["seed"], [0, 1])


def test_history_steps_uneven(grid):
  """steps=25, log_every=10 gives windows ending at 10, 20, 25, and final_loss is the last."""
  np.testing.assert_array_equal(grid.extra["history_steps"], [10, 20, 25])
  np.testing.assert_array_equal(grid.data["final_loss"], grid.data["loss_history"][..., -1])
  np.testing.assert_array_equal(
      SweepSpec(**dict(GRID, steps=30)).history_steps(), [10, 20, 30])
  np.testing.assert_array_equal(
      SweepSpec(**dict(GRID, steps=7)).history_steps(), [7])


def test_metrics_agree_with_weights(grid):
  """The stored metrics are those of the stored W (no axis mix-up in the grid reshape)."""
  ok = ~grid.data["diverged"]
  W = grid.data["W"][ok].astype(np.float64)
  np.testing.assert_allclose(grid.data["feature_norms"][ok], np.linalg.norm(W, axis=-2),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grid.data["dims_per_feature"][ok], 2 / np.sum(W**2, axis=(-2, -1)),
                             rtol=1e-5, atol=0)


# ---------------------------------------------------------------------------- equivalence

def test_point_alone_equals_point_in_grid(grid_and_alone):
  """A grid point trains to the same numbers alone as inside a bigger grid."""
  rng, grid, alone = grid_and_alone
  in_grid = grid.sel(**POINT).data
  by_itself = alone.sel(**POINT).data
  assert not in_grid["diverged"]
  chex.assert_trees_all_close(in_grid, by_itself, rtol=1e-4, atol=1e-5)
  # Not vacuous: training moved the loss and the point is not the same as its neighbours.
  assert in_grid["loss_history"][0] != in_grid["loss_history"][-1]
  other = grid.sel(**dict(POINT, density=0.01)).data
  assert not np.allclose(in_grid["W"], other["W"], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def grid_chunked(grid_and_alone):
  """GRID run again with chunk sizes 1 and 5 and, with shared random numbers, with chunks
  cut per seed: {(chunk_size, span_seeds): result}."""
  rng = grid_and_alone[0]
  spec = SweepSpec(**dict(GRID, rng=rng))
  runs = {(c, rng == "shared"): sweep.run(spec, chunk_size=c) for c in (1, 5)}
  if rng == "shared":
    runs[(12, False)] = sweep.run(spec, span_seeds=False)
  return runs


def test_chunk_size_does_not_change_results(grid, grid_chunked):
  """Chunks of 1, 5, the default, and (shared) per-seed chunks train to the same numbers.

  GRID has 12 points per seed and 24 per activation: chunks of 5 carry pads (25 slots),
  chunks of 1 train every model on its own. A seed's 12 points are fewer than a
  cache-sized chunk, so by default chunks span seeds (all 24 points, each model reading
  its own seed's uniforms); cut per seed, a chunk is one seed's 12 points.
  """
  assert grid.meta["engine"]["chunk_size"] == 24
  assert grid.meta["engine"]["span_seeds"] == (grid.spec.rng == "shared")
  ok = ~grid["diverged"]  # diverged models hold inf/NaN garbage that need not agree
  assert ok.sum() == 24
  for (c, span), res in grid_chunked.items():
    assert (res.meta["engine"]["chunk_size"], res.meta["engine"]["span_seeds"]) == (c, span)
    np.testing.assert_array_equal(res["diverged"], grid["diverged"])
    for k in ("W", "b", "loss_history", "eval_loss", "feature_dimensionality"):
      np.testing.assert_allclose(res[k][ok], grid[k][ok], rtol=1e-4, atol=1e-5,
                                 err_msg=f"chunk_size={c}, span_seeds={span}: {k}")
  # Not vacuous: the sane models all differ at this tolerance (none copied from a pad).
  W = grid.sel(lr=1e-2)["W"].reshape(-1, 2 * 5)
  for i in range(len(W)):
    for j in range(i):
      assert not np.allclose(W[i], W[j], rtol=1e-4, atol=1e-5), (i, j)


def test_seeds_differ(grid):
  """Different seeds give different weights at the same grid point."""
  sel = dict(POINT)
  del sel["seed"]
  W = grid.sel(**sel)["W"]
  chex.assert_shape(W, (2, 2, 5))
  assert np.max(np.abs(W[0] - W[1])) > 1e-2


def test_rng_modes_differ(grid_and_alone):
  """rng modes differ: per_point draws other numbers than shared for the same point."""
  rng, grid, _ = grid_and_alone
  other = sweep.run(_alone("per_point" if rng == "shared" else "shared"))
  assert not np.allclose(grid.sel(**POINT)["W"], other.sel(**POINT)["W"], rtol=1e-3, atol=1e-4)


def test_rerun_is_bit_identical(grid_and_alone):
  """The same grid run twice gives bit-identical arrays (diverged NaNs included)."""
  rng, grid, _ = grid_and_alone
  again = sweep.run(SweepSpec(**dict(GRID, rng=rng)))
  assert set(again.data) == set(grid.data)
  for k in grid.data:
    np.testing.assert_array_equal(again.data[k], grid.data[k], err_msg=k)


# ---------------------------------------------------------------------------- divergence

def test_diverged_only_where_lr_is_huge(grid):
  """lr=1e6 points are flagged diverged; their lr=1e-2 neighbours stay finite."""
  huge = grid.sel(lr=1e6)
  sane = grid.sel(lr=1e-2)
  assert huge["diverged"].all()
  assert not np.isfinite(huge["W"]).all(axis=(-2, -1)).any()
  assert not sane["diverged"].any()
  for k in ("W", "b", "loss_history", "eval_loss", "feature_dimensionality"):
    assert np.isfinite(sane[k]).all(), k


def test_diverged_models_have_no_finite_eval_loss(grid):
  """A diverged model's eval_loss is NaN, so no seed rule can prefer it."""
  diverged = grid["diverged"]
  assert diverged.any()
  assert not np.isfinite(grid["eval_loss"][diverged]).any()


# ---------------------------------------------------------------------------- compile once

LINEAR = dict(n=5, m=5, activations=("linear",), importance_kind="uniform", importances=(1.0,),
              lrs=(1e-2,), steps=300, **TINY)


class CompileEvents:
  """Counts JAX's own monitoring events: traces to a jaxpr and backend compiles (a
  program loaded from the persistent compilation cache counts as compiled)."""

  TRACE = "/jax/core/compile/jaxpr_trace_duration"
  COMPILE = "/jax/core/compile/backend_compile_duration"
  CACHE_HIT = "/jax/compilation_cache/cache_hits"

  def __init__(self):
    self.events = []

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    jax.monitoring.register_event_listener(self._listen)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listen)
    jax.monitoring.unregister_event_listener(self._listen)

  def _listen(self, event, *args, **kw):
    self.events.append(event)

  def count(self, event):
    hits = self.events.count(self.CACHE_HIT) if event == self.COMPILE else 0
    return self.events.count(event) + hits


@pytest.fixture(scope="module")
def linear_runs():
  """Two specs with equal shapes but other density/lr values, with traces and compiles
  counted for each run (by jax.monitoring events)."""
  with CompileEvents() as one:
    first = sweep.run(SweepSpec(**LINEAR))
  with CompileEvents() as two:
    second = sweep.run(SweepSpec(**dict(LINEAR, densities=(0.5,), lrs=(3e-3,))))
  counts = {"traces_first": one.count(one.TRACE), "compiles_first": one.count(one.COMPILE),
            "traces_second": two.count(two.TRACE), "compiles_second": two.count(two.COMPILE)}
  return first, second, counts


def test_compiles_once(linear_runs):
  """New density/lr values with the same shapes reuse the program: no trace, no compile.

  (`run` compiles ahead of time with `.lower().compile()`; JAX's monitoring events for
  tracing and backend compilation are the observables.)
  """
  first, second, counts = linear_runs
  assert counts["traces_first"] >= 1 and counts["compiles_first"] >= 1
  assert counts["traces_second"] == 0
  assert counts["compiles_second"] == 0
  assert not np.allclose(first["W"], second["W"])
  assert second.meta["timings"]["compile_s"] < first.meta["timings"]["compile_s"]


def test_two_static_configs_in_one_process():
  """Two differently-shaped specs lowered one after the other: each traced once; lowering
  the same one again traces nothing."""
  for m in (1, 2):
    spec = SweepSpec(n=3, m=m, activations=("relu",), steps=3, **TINY)
    layout = plan.make_plan(spec, devices=jax.devices(), chunk_size=1)
    with CompileEvents() as first:
      program.grid_program(layout).lower(*sweep.program_inputs(spec))
    with CompileEvents() as again:
      program.grid_program(layout).lower(*sweep.program_inputs(spec))
    assert first.count(first.TRACE) >= 1 and again.count(again.TRACE) == 0


def test_chunks_span_seeds_only_where_a_seed_cannot_fill_one():
  """Shared random numbers, 6 points per seed (fewer than a cache-sized chunk): chunks
  of 9 cut across the 3 seeds, each slot knowing its own seed; per-point streams, one
  seed, or seeds with many points keep chunks within a seed."""
  few = dict(n=10, m=5, activations=("relu",), densities=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003),
             seeds=(0, 1, 2), batch_size=1024, eval_size=1024, steps=10, log_every=5)
  one = jax.devices()[:1]
  layout = plan.make_plan(SweepSpec(**few), devices=one)
  assert layout.span_seeds and layout.chunk_size == 9 and layout.n_chunks == 2
  np.testing.assert_array_equal(layout.chunk_seeds(), [[0] * 6 + [1] * 3, [1] * 3 + [2] * 6])
  np.testing.assert_array_equal(layout.chunk_index().ravel(), np.arange(18))
  per_seed = plan.make_plan(SweepSpec(**few), devices=one, span_seeds=False)
  assert not per_seed.span_seeds and per_seed != layout
  np.testing.assert_array_equal(per_seed.chunk_seeds(), np.repeat([0, 1, 2], 6).reshape(3, 6))
  for kw in (dict(rng="per_point"), dict(seeds=(0,))):
    assert not plan.make_plan(SweepSpec(**dict(few, **kw)), devices=one).span_seeds, kw
  many = SweepSpec(**dict(few, n=2, m=1, importance_kind="relative",
                          densities=tuple(np.geomspace(0.01, 1, 20)),
                          importances=tuple(np.geomspace(0.1, 10, 20))))
  assert not plan.make_plan(many, devices=one).span_seeds


def test_plans_equal_by_static_settings_only():
  """Plans of specs that differ only in swept values are equal (one compiled program);
  a different shape or static setting is another plan."""
  devices = jax.devices()
  make = lambda **kw: plan.make_plan(SweepSpec(**dict(LINEAR, **kw)), devices=devices, chunk_size=1)
  assert make() == make(densities=(0.5,), lrs=(3e-3,), seeds=(7,), weight_decays=(0.1,),
                       init_scales=(3.0,))
  assert hash(make()) == hash(make(densities=(0.5,)))
  assert make() != make(steps=LINEAR["steps"] + 1)
  assert make() != make(densities=(0.5, 0.25))


def test_evicted_program_can_be_rebuilt(monkeypatch):
  """A plan evicted from the program cache can be compiled again.

  The cache is shrunk to one entry so that eviction happens after two configs, not 33.
  """
  monkeypatch.setattr(program, "grid_program", functools.lru_cache(maxsize=1)(program.grid_program.__wrapped__))
  specs = [SweepSpec(n=3, m=m, activations=("relu",), steps=2, **TINY) for m in (1, 2, 1)]
  for spec in specs:
    layout = plan.make_plan(spec, devices=jax.devices(), chunk_size=1)
    program.grid_program(layout).lower(*sweep.program_inputs(spec))


def test_per_point_keys_obey_rank_promotion_raise():
  """rng='per_point' traces without implicit rank promotion (GRID also runs it).

  Was a bug: the per-point importance label multiplied [I, n] by [n] by rank promotion.
  """
  spec = SweepSpec(n=4, m=3, activations=("relu",), importances=(0.7, 0.9), steps=3,
                   rng="per_point", **TINY)
  with jax.numpy_rank_promotion("raise"):
    program.grid_program(plan.make_plan(spec, devices=jax.devices(), chunk_size=2)).lower(
        *sweep.program_inputs(spec))


# ---------------------------------------------------------------------------- learning

def test_linear_model_learns(linear_runs):
  """Linear n = m = 5, dense: loss falls far below the first window; WᵀW -> identity."""
  first = linear_runs[0].sel(activation="linear", density=1.0, importance=1.0, lr=1e-2, seed=0,
                             **SETTINGS)
  hist = first["loss_history"]
  chex.assert_shape(hist, (30,))
  assert hist[-1] < 0.1 * hist[0]
  W = first["W"].astype(np.float64)
  np.testing.assert_allclose(W.T @ W, np.eye(5), rtol=0, atol=0.15)


def test_relu_n2_drops_the_less_important_feature():
  """ReLU n=2, m=1, dense, feature 2 at importance 0.1: W -> [±1, 0], loss -> r(s/3 - s²/4).

  Wattenberg's closed form: at density s = 1, dropping feature 2 costs 0.1·(1/3 - 1/4) =
  0.00833, dropping feature 1 costs 0.0833, the antipodal pair (1 + 0.1)/6 = 0.183.
  """
  spec = SweepSpec(n=2, m=1, activations=("relu",), importance_kind="relative",
                         importances=(0.1,), lrs=(1e-2,), seeds=(0, 1, 2), steps=1500, **TINY)
  res = sweep.run(spec).sel(activation="relu", density=1.0, importance=0.1, lr=1e-2,
                            **SETTINGS)
  chex.assert_shape(res["phase"], (3,))  # n = 2: phase is present
  norms = res["feature_norms"]
  np.testing.assert_allclose(norms[:, 0], 1.0, rtol=0, atol=0.05)
  np.testing.assert_allclose(norms[:, 1], 0.0, rtol=0, atol=0.05)
  np.testing.assert_array_equal(res["phase"], metrics.FEATURE1)
  np.testing.assert_allclose(res["eval_loss"], 0.1 * (1 / 3 - 1 / 4), rtol=0.15, atol=0)


# ---------------------------------------------------------------------------- study-size grid

def test_study_grid_runs_and_round_trips(tmp_path):
  """7 activations × 20 densities × 3 seeds at n=10, m=5 in one call; the npz explains itself."""
  densities = tuple(float(d) for d in 20.0 ** -np.linspace(0, 1, 20))
  spec = SweepSpec(n=10, m=5, densities=densities, seeds=(0, 1, 2), steps=10, **TINY)
  res = sweep.run(spec)
  assert spec.grid_shape == (7, 20, 1, 1, 1, 1, 3)
  chex.assert_shape(res["W"], (7, 20, 1, 1, 1, 1, 3, 5, 10))
  assert not res["diverged"].any()
  path = results.save(res, tmp_path / "study")
  loaded = results.load(path)
  for k in res.data:
    np.testing.assert_array_equal(loaded.data[k], res.data[k], err_msg=k)
  env = loaded.meta["env"]
  assert env["jax"] == jax.__version__
  assert env["numpy"] == np.__version__
  assert env["backend"] == jax.default_backend()
  assert env["device_count"] == jax.device_count()
  for k in ("optax", "jaxlib", "matplotlib", "python", "device_kind", "superpos_jax"):
    assert env[k], k
  t = loaded.meta["timings"]
  assert t["compile_s"] > 0 and t["run_s"] > 0 and t["model_steps_per_s"] > 0
  assert loaded.meta["spec_digest"] == spec.digest()
  assert SweepSpec.from_dict(loaded.meta["spec"]) == spec
  assert loaded.meta["schema_version"] == results.SCHEMA_VERSION


@pytest.mark.parametrize("init_rng", ["per_point", "shared"])
def test_init_keys_per_point_data_keys_per_seed(init_rng):
  """By default every point starts from its own W (init key from its density and
  importance) while the points of a seed share their data stream; init_rng='shared'
  gives a seed one W."""
  spec = SweepSpec(n=3, m=2, activations=("relu",), densities=(1.0, 0.5), importances=(0.7, 0.9),
                   seeds=(0, 1), steps=2, init_rng=init_rng, **TINY)
  keys = jax.random.key_data(sweep.point_keys(spec, *sweep.program_inputs(spec)[:4]))
  init, data = np.asarray(keys[:, 0]), np.asarray(keys[:, 1])  # [S*Q, ...], seed-major
  per_seed = lambda k: k.reshape((2, 4) + k.shape[1:])
  distinct = lambda k: len({tuple(np.ravel(x)) for x in k})
  for seed in range(2):
    assert distinct(per_seed(data)[seed]) == 1
    assert distinct(per_seed(init)[seed]) == (4 if init_rng == "per_point" else 1)
  assert distinct(init) == (8 if init_rng == "per_point" else 2)
  res = sweep.run(spec)
  W0 = res.sel(activation="relu", seed=0, **SETTINGS)["W"]  # [D, I, L, m, n] after 2 steps
  assert (np.abs(W0[0, 0, 0] - W0[1, 0, 0]).max() > 1e-2) == (init_rng == "per_point")


@pytest.mark.parametrize("rng", ["shared", "per_point"])
def test_optimiser_axes_share_a_start(rng):
  """Every lr, weight decay and init scale of a point and seed gets the same keys, so
  W₀ = α·Z scales ONE draw Z (a paired comparison); density and importance still get
  their own. At α = 3 the initial W is exactly 3× the α = 1 one."""
  spec = SweepSpec(n=3, m=2, activations=("relu",), densities=(1.0, 0.5), lrs=(1e-3, 1e-2),
                   weight_decays=(0.0, 0.01), init_scales=(1.0, 3.0), seeds=(0, 1), steps=2,
                   rng=rng, **TINY)
  S, D, I, L, WD, AL = program.point_grid(spec)
  keys = np.asarray(jax.random.key_data(sweep.point_keys(spec, *sweep.program_inputs(spec))))
  keys = keys.reshape((S, D, I, L * WD * AL) + keys.shape[1:])
  np.testing.assert_array_equal(keys, np.broadcast_to(keys[:, :, :, :1], keys.shape))
  assert len({tuple(k) for k in keys[:, :, :, 0, 0].reshape(-1, 2)}) == S * D * I  # init keys
  trainer = train.make_train(spec, activations.get("relu"))
  init_key = jax.random.wrap_key_data(jnp.asarray(keys[0, 1, 0, 0, 0]))
  Z = trainer.init(init_key, 1.0, 1e-3, 0.01).params.W
  np.testing.assert_array_equal(trainer.init(init_key, 3.0, 1e-2, 0.0).params.W, 3.0 * Z)


def test_default_keys_are_those_of_before_shared_starts():
  """Keys of α = 1, λ = 0.01, lr = 1e-3 points (every preset's) did not move when the
  optimiser axes stopped folding into them: values recorded from the engine before."""
  spec = SweepSpec(n=3, m=2, activations=("relu",), densities=(1.0, 0.5), seeds=(0, 7),
                   rng="per_point", **TINY)
  keys = np.asarray(jax.random.key_data(sweep.point_keys(spec, *sweep.program_inputs(spec))))
  np.testing.assert_array_equal(keys[:, :, -1], EXPECTED_KEY_WORDS)
