"""The engine's hot path and layout: batch_loss, chunking, sharding, memory, progress."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superpos_jax import activations, data, plan, progress, results, sweep, train
from superpos_jax.spec import SpecError, SweepSpec
from tests.reference import batch_loss, loss_fn
from superpos_jax.model import init_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(batch_size=64, eval_size=256, log_every=10)
TOL = dict(rtol=1e-4, atol=1e-5)
ARRAYS = ("W", "b", "loss_history", "eval_loss")


def _assert_results_close(a, b, **tol):
  for k in ARRAYS:
    np.testing.assert_allclose(a.data[k], b.data[k], err_msg=k, **(tol or TOL))


# ---------------------------------------------------------------------------- batch_loss

def _solu_one_example(z):
  """SoLU written for one example only (softmax over axis -1): needs per_example=True."""
  return z * jax.nn.softmax(z, axis=-1)


def _loss_inputs(n=6, m=3, B=32):
  params = init_params(jax.random.key(1), n, m)
  params = params._replace(b=jax.random.normal(jax.random.key(2), (n,)) * 0.3)
  xs_cols = data.thin(jax.random.uniform(jax.random.key(3), (n, B)), jnp.float32(0.5))
  imp = jnp.asarray(0.8 ** np.arange(n), jnp.float32)
  return params, xs_cols, imp


@pytest.mark.parametrize("name", activations.names())
def test_batch_loss_equals_loss_fn(name):
  """batch_loss on columns [n, B] equals loss_fn on rows [B, n], every registered activation.

  This is the registry's contract (features on axis 0): each built-in, applied to a whole
  [n, B] block, acts on every column as on one example -- SoLU included.
  """
  act = activations.get(name)
  params, xs_cols, imp = _loss_inputs()
  got = jax.jit(lambda p, x, i: batch_loss(p, x, i, act.fn, per_example=act.per_example))(
      params, xs_cols, imp)
  want = jax.jit(lambda p, x, i: loss_fn(p, x, i, act.fn))(params, xs_cols.T, imp)
  chex.assert_shape(got, ())
  np.testing.assert_allclose(float(got), float(want), rtol=1e-5, atol=0)


def test_per_example_activation_is_vmapped():
  """An activation written for one example (axis=-1) is right with per_example=True only."""
  params, xs_cols, imp = _loss_inputs()
  want = loss_fn(params, xs_cols.T, imp, _solu_one_example)
  got = batch_loss(params, xs_cols, imp, _solu_one_example, per_example=True)
  np.testing.assert_allclose(float(got), float(want), rtol=1e-5, atol=0)
  np.testing.assert_allclose(float(got), float(batch_loss(params, xs_cols, imp,
                                                          activations.solu)), rtol=1e-5)
  wrong = batch_loss(params, xs_cols, imp, _solu_one_example)  # softmax over the batch
  assert abs(float(wrong) - float(want)) > 1e-4 * abs(float(want))


def test_batch_loss_gradient_equals_loss_fn_gradient():
  """The engine differentiates batch_loss: its gradient equals loss_fn's too."""
  n, m, B = 5, 2, 16
  params = init_params(jax.random.key(4), n, m)
  xs_cols = data.thin(jax.random.uniform(jax.random.key(5), (n, B)), jnp.float32(0.4))
  imp = jnp.ones((n,), jnp.float32)
  cases = [(activations.get(a).fn, False) for a in ("relu", "solu")]
  for fn, per_example in cases + [(_solu_one_example, True)]:
    g = jax.jit(jax.grad(lambda p: batch_loss(p, xs_cols, imp, fn,
                                              per_example=per_example)))(params)
    want = jax.jit(jax.grad(lambda p: loss_fn(p, xs_cols.T, imp, fn)))(params)
    chex.assert_trees_all_close(g, want, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------- devices

_SHARDED_SCRIPT = textwrap.dedent("""
    import sys
    import jax
    from superpos_jax import results, sweep
    from superpos_jax.spec import SweepSpec
    assert jax.device_count() == 4, jax.devices()
    for rng in ("shared", "per_point"):
      spec = SweepSpec(n=3, m=2, activations=("tanh",),
                             densities=(1.0, 0.3, 0.05), seeds=(0, 1, 2), lrs=(1e-2,),
                             steps=20, batch_size=64, eval_size=256, log_every=10, rng=rng)
      for name, devices in (("four", jax.devices()), ("one", jax.devices()[:1])):
        results.save(sweep.run(spec, devices=devices), f"{sys.argv[1]}/{rng}_{name}")
      if rng == "shared" and sys.argv[2]:  # chunks of 2 across seeds, pad slots and chunks
        results.save(sweep.run(spec, devices=jax.devices(), chunk_size=2),
                     f"{sys.argv[1]}/{rng}_four_chunk2")
""")


@pytest.fixture(scope="module")
def sharded_files(tmp_path_factory):
  """Runs _SHARDED_SCRIPT in a process with 4 host devices; returns its output folder."""
  folder = tmp_path_factory.mktemp("sharded")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  slow = os.environ.get("SUPERPOS_JAX_RUNSLOW", "")  # the chunked run is a slow test's
  proc = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT, str(folder), slow],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return folder


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_chunks_spanning_seeds_over_four_devices_equal_one(sharded_files):
  """Chunks of 2 over 9 points of 3 seeds: 5 chunks padded to 8 on 4 devices, chunk
  [2, 3] mixing seeds 0 and 1 and [8, 8] a pad slot; the same arrays as one device."""
  mixed = results.load(sharded_files / "shared_four_chunk2.npz")
  one = results.load(sharded_files / "shared_one.npz")
  assert mixed.meta["engine"]["chunk_size"] == 2 and mixed.meta["engine"]["span_seeds"]
  for k in one.data:
    np.testing.assert_allclose(mixed.data[k], one.data[k], rtol=1e-5, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("rng", ["shared", "per_point"])
def test_sharded_over_four_devices_equals_one(sharded_files, rng):
  """On 4 (forced host) devices the grid, padded to whole chunks per device, gives the
  same arrays as on 1 device, and the metadata records the device count."""
  four = results.load(sharded_files / f"{rng}_four.npz")
  one = results.load(sharded_files / f"{rng}_one.npz")
  assert four.meta["engine"]["devices"] == 4
  assert one.meta["engine"]["devices"] == 1
  assert four.meta["env"]["device_count"] == 4 and one.meta["env"]["device_count"] == 1
  # 9 models over 4 devices: chunks of 3, i.e. 3 chunks padded to 4 (one whole pad
  # chunk on the last device). 1 device: all 9 in one chunk (shared mode: the chunk
  # spans the 3 seeds, each model reading its own seed's uniforms).
  assert four.meta["engine"]["chunk_size"] == 3
  assert one.meta["engine"]["chunk_size"] == 9
  assert one.meta["engine"]["span_seeds"] == (rng == "shared")
  assert set(four.data) == set(one.data)
  for k in four.data:
    np.testing.assert_allclose(four.data[k], one.data[k], rtol=1e-5, atol=1e-7, err_msg=k)
  assert not four["diverged"].any()


# ---------------------------------------------------------------------------- random draws

@pytest.mark.parametrize("length,step_bytes,block_bytes,want", [
    (100, 8192, 2**21, 100),   # n=2 batch 1024: a whole window per draw
    (100, 40960, 2**21, 50),   # n=10: 51 steps fit, 50 divides 100
    (97, 8192, 2**21, 97),
    (97, 40960, 2**21, 1),     # prime length over the cap: step by step
    (7, 10**9, 2**21, 1),      # one step over the cap still draws one step
])
def test_draw_block_steps_divides_the_window_within_the_cap(length, step_bytes, block_bytes, want):
  """Steps per draw: the largest divisor of the window length whose draw fits the cap."""
  assert train.block_steps(length, step_bytes, block_bytes) == want


@pytest.mark.parametrize("rng", ["shared", "per_point"])
def test_block_draws_train_like_step_by_step_draws(monkeypatch, rng):
  """Drawing a block of steps' uniforms at once gives the numbers of one draw per step.

  DRAW_BLOCK_BYTES=1 forces one step per draw; the default draws each 10-step window (and
  the 5-step remainder) at once. Same random numbers, so the same training.
  """
  spec = SweepSpec(n=4, m=2, activations=("relu", "tanh"), densities=(1.0, 0.2),
                         seeds=(0, 1), steps=25, rng=rng, **TINY)
  blocked = sweep.run(spec)
  monkeypatch.setattr(plan, "DRAW_BLOCK_BYTES", 1)
  stepwise = sweep.run(spec)
  _assert_results_close(blocked, stepwise, rtol=1e-6, atol=1e-7)
  other = sweep.run(dataclasses.replace(spec, seeds=(2, 3)))  # the check can fail
  assert np.abs(other["W"] - stepwise["W"]).max() > 1e-3


# ---------------------------------------------------------------------------- memory

_GROWTH_SCRIPT = textwrap.dedent("""
    import sys
    from superpos_jax import cli
    cli.configure_host()  # the scripts' XLA flags
    import jax
    import numpy as np
    from superpos_jax import sweep
    from superpos_jax.spec import SweepSpec
    steps, n = int(sys.argv[1]), int(sys.argv[2])
    assert jax.device_count() == 2
    if n == 2:  # 1,200 phase-diagram models
      spec = SweepSpec(n=2, m=1, activations=("relu",), importance_kind="relative",
                       densities=tuple(np.geomspace(0.01, 1, 20)),
                       importances=tuple(np.geomspace(0.1, 10, 20)), seeds=(0, 1, 2),
                       steps=steps, log_every=100)
    else:  # the 20 relu models of the n=200 experiment
      spec = SweepSpec(n=n, m=20, activations=("relu",), importance_kind="uniform",
                       importances=(1.0,), densities=tuple(20.0 ** -np.linspace(0, 1, 20)),
                       steps=steps, log_every=50, eval_size=1024)
    sweep.run(spec, progress=False)
    # This process's own peak (VmHWM; ru_maxrss would include the parent's, inherited
    # through fork+exec).
    with open("/proc/self/status") as f:
      print(next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:")))
""")


def _peak_mb(steps: int, n: int = 2) -> int:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _GROWTH_SCRIPT, str(steps), str(n)], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return int(proc.stdout.split()[-1])


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_memory_does_not_grow_with_steps_on_two_devices():
  """Peak memory of a 1,200-model grid is the same after 5,000 steps as after 500, on two
  host devices with the scripts' XLA flags (cli.py). With XLA CPU's YNNPACK reductions on,
  it grew by ~300 MB here (a few KB per chunk and step) and killed a full phase diagram."""
  short, long = _peak_mb(500), _peak_mb(5000)
  assert long - short < 100, (short, long)


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_n200_memory_does_not_grow_with_steps_on_a_two_device_host():
  """The n=200 models on a two-device host, with the default device choice: peak memory
  after 600 steps equals that after 100. Trained over both devices, XLA CPU's YNNPACK dot
  fusions grew these 20 models ~56 MB over those 500 steps (~7 GB for the paper's 7
  activations x 10,000 steps); `plan.choose_devices` gives them one device instead."""
  short, long = _peak_mb(100, 200), _peak_mb(600, 200)
  assert long - short < 25, (short, long)


MEM_SPEC = SweepSpec(n=6, m=3, activations=("relu",), densities=(1.0, 0.1, 0.01),
                           importances=(0.8,), seeds=(0, 1, 2), steps=20, **TINY)


def _mem_estimate(chunk):
  """`plan.estimate_memory` of MEM_SPEC on one CPU device, seeds spanned as by default."""
  return plan.estimate_memory(MEM_SPEC, chunk, span_seeds=plan.spans_seeds(MEM_SPEC))


def test_choose_chunk_size_fits_the_budget():
  """A small byte budget shrinks the chunk until the estimate fits it."""
  default = plan.choose_chunk_size(MEM_SPEC)
  assert default == 9  # 3 points per seed: the chunk spans the 3 seeds
  assert plan.choose_chunk_size(MEM_SPEC, span_seeds=False) == 3  # one seed's points
  budget = _mem_estimate(2)
  chunk = plan.choose_chunk_size(MEM_SPEC, max_memory=budget)
  assert 1 <= chunk <= 2
  assert _mem_estimate(chunk) <= budget
  assert plan.choose_chunk_size(MEM_SPEC, max_memory=2**40) == default
  # The estimate grows with the chunk (it is what the budget trades against).
  assert _mem_estimate(1) < _mem_estimate(9)


@pytest.mark.parametrize("n,m,points,seeds,devices", [
    (200, 20, 20, 1, 2),   # dims_per_feature: chunks of 7 would pad 3 chunks to 4
    (2, 1, 1600, 3, 2),    # the 40x40 phase diagram, 3 seeds
    (10, 5, 7, 3, 1),
])
def test_chunks_fill_the_devices_without_padding(n, m, points, seeds, devices):
  """The chosen chunk size pads no chunk slot when the grid can be cut evenly, and keeps
  at least MIN_CHUNK (or all of a seed's points) per chunk."""
  spec = SweepSpec(n=n, m=m, activations=("relu",), importance_kind="uniform",
                         importances=(1.0,), seeds=tuple(range(seeds)),
                         densities=tuple(np.geomspace(0.01, 1.0, points)))
  span = plan.spans_seeds(spec)
  chunk = plan.choose_chunk_size(spec, devices=devices)
  layout = plan.Plan(spec, chunk, (None,) * devices, span_seeds=span)  # counts devices only
  assert layout.n_chunks * chunk == spec.num_models
  assert chunk >= min(points, plan.MIN_CHUNK) // 2


def test_budget_below_one_model_raises():
  """A budget under one model at a time raises SpecError saying what to change."""
  too_small = _mem_estimate(1) - 1
  with pytest.raises(SpecError, match=r"(GiB|MiB|KiB).*budget.*shrink the grid or batch"):
    plan.choose_chunk_size(MEM_SPEC, max_memory=too_small)
  with pytest.raises(SpecError, match="budget"):
    sweep.run(MEM_SPEC, max_memory=too_small)


@pytest.fixture(scope="module")
def mem_full():
  """MEM_SPEC run with no budget and no progress."""
  return sweep.run(MEM_SPEC, progress=False)


def test_run_under_a_small_budget_gives_the_same_results(mem_full):
  """run(spec, max_memory=small) uses a smaller chunk and trains to the same numbers."""
  budget = _mem_estimate(2)
  small = sweep.run(MEM_SPEC, max_memory=budget, devices=jax.devices()[:1])
  assert small.meta["engine"]["chunk_size"] <= 2 < mem_full.meta["engine"]["chunk_size"]
  assert small.meta["engine"]["estimated_bytes"] <= budget
  _assert_results_close(small, mem_full)


def _big_n2_spec(**kw):
  """10^5 models at n=2, m=1: 100 densities × 100 importances × 10 seeds."""
  return SweepSpec(**dict(dict(
      n=2, m=1, activations=("relu",), densities=tuple(np.geomspace(1.0, 1e-3, 100)),
      importance_kind="relative", importances=tuple(np.geomspace(0.1, 10.0, 100)),
      seeds=tuple(range(10))), **kw))


def test_hundred_thousand_n2_models_fit_in_memory():
  """A 10^5-model n=2 grid at the study's batch and eval sizes is estimated well under 24 GiB."""
  spec = _big_n2_spec(steps=10_000)
  assert spec.num_models == 100_000
  chunk = plan.choose_chunk_size(spec)
  assert 1 <= chunk < spec.num_models
  assert plan.estimate_memory(spec, chunk) < 2 * 2**30
  assert plan.choose_chunk_size(spec, max_memory=24 * 2**30) == chunk


@pytest.mark.slow
def test_hundred_thousand_n2_models_run():
  """The 10^5-model n=2 grid really runs (20 steps) in one call, within 24 GiB of RSS."""
  import resource
  spec = _big_n2_spec(steps=20, log_every=10)
  res = sweep.run(spec)
  chex.assert_shape(res["W"], spec.grid_shape + (1, 2))  # 1 x 100 x 100 x 10 seeds
  assert not res["diverged"].any()
  assert np.isfinite(res["eval_loss"]).all()
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
  assert rss < 24 * 2**30


# ---------------------------------------------------------------------------- progress

def test_progress_lines_and_identical_results(mem_full, capfd):
  """progress=True reports to stderr up to 100.0%; progress=False prints nothing; the
  numbers do not depend on it (MEM_SPEC: 3 chunks × 2 log windows of progress)."""
  capfd.readouterr()
  quiet = sweep.run(MEM_SPEC, progress=False)  # mem_full's program again: no compile
  out, err = capfd.readouterr()
  assert out == "" and err == ""
  loud = sweep.run(MEM_SPEC, progress=True)
  out, err = capfd.readouterr()
  assert out == ""
  lines = [l.strip() for l in err.replace("\r", "\n").splitlines() if l.strip()]
  assert lines and all(l.startswith("training") for l in lines), err
  assert "100.0%" in lines[-1] and "model-steps/s" in lines[-1] and "ETA" in lines[-1]
  assert err.endswith("\n")
  for k in quiet.data:
    np.testing.assert_array_equal(loud.data[k], quiet.data[k], err_msg=k)
    np.testing.assert_array_equal(mem_full.data[k], quiet.data[k], err_msg=k)


def test_progress_with_fewer_steps_than_log_every():
  """The progress reporter accepts a run shorter than one log window.

  (Builds the reporter `run(spec, progress=True)` builds, without compiling the program.)
  """
  spec = SweepSpec(n=3, m=2, activations=("relu",), steps=7, **TINY)
  layout = plan.make_plan(spec, devices=jax.devices(), chunk_size=1, progress=True)
  assert sweep.progress_ticks(layout) == 0
  progress.Progress(sweep.progress_ticks(layout), spec.num_models * spec.steps)(0, 0)


# ---------------------------------------------------------------------------- arguments

def test_bad_chunk_size_raises_naming_it():
  """chunk_size=0 raises a ValueError (SpecError) that names chunk_size."""
  spec = SweepSpec(n=3, m=2, activations=("relu",), steps=5, **TINY)
  with pytest.raises(ValueError, match="chunk_size"):
    sweep.run(spec, chunk_size=0)
