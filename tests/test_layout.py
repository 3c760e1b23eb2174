"""The layout chosen for the device kind, the pinned matmul precision, CPU-only XLA flags,
the autotuner and the one plan handed down (issue: accelerators)."""

import os
import re

import jax
import numpy as np
import pytest

from superpos_jax import autotune, cli, plan, sweep
from superpos_jax.spec import SpecError, SweepSpec

TINY = dict(batch_size=64, eval_size=256, log_every=5)
N2 = SweepSpec(n=2, m=1, activations=("relu", "tanh"), densities=tuple(np.geomspace(0.01, 1, 8)),
               importance_kind="relative", importances=tuple(np.geomspace(0.1, 10, 5)),
               seeds=(0, 1, 2), steps=10, **TINY)


class FakeDevice:
  """Stands in for an accelerator in layout arithmetic (Plan counts devices only)."""

  def __init__(self, platform="gpu", process_index=0):
    self.platform, self.process_index = platform, process_index


def _paper_n2():
  return SweepSpec(n=2, m=1, densities=tuple(np.geomspace(0.01, 1, 20)), importance_kind="relative",
                   importances=tuple(np.geomspace(0.1, 10, 20)), seeds=tuple(range(10)), steps=5000)


@pytest.mark.parametrize("devices", [1, 4])
def test_accelerator_gets_one_chunk_per_device(devices):
  """On a GPU- or TPU-sized budget the paper n=2 grid (4,000 points per activation) is one
  chunk per device, seeds spanned; on CPU it is dozens of cache-sized chunks."""
  spec = _paper_n2()
  q = spec.num_models // len(spec.activations)
  assert plan.spans_seeds(spec, "gpu")
  chunk = plan.choose_chunk_size(spec, max_memory=80 * 2**30, devices=devices, platform="gpu")
  assert chunk == -(-q // devices)
  layout = plan.Plan(spec, chunk, (FakeDevice(),) * devices, span_seeds=True)
  assert layout.n_chunks == devices and layout.platform == "gpu"
  cpu = plan.choose_chunk_size(spec, devices=devices)
  assert cpu <= plan.CACHE_BYTES // (4 * 3 * spec.batch_size) < q // devices


def test_accelerator_chunk_shrinks_to_the_device_budget():
  """A device budget that holds only part of its share halves the chunk until it fits;
  the estimate is one device's (its chunk and its share of the states)."""
  spec = _paper_n2()
  q = spec.num_models // len(spec.activations)
  full = plan.estimate_memory(spec, q, platform="gpu", span_seeds=True)
  chunk = plan.choose_chunk_size(spec, max_memory=full // 3, platform="gpu")
  assert 1 <= chunk < q // 2
  assert plan.estimate_memory(spec, chunk, platform="gpu", span_seeds=True) <= full // 3
  # One device's states: 4 GPUs each hold a quarter.
  one = plan.estimate_memory(spec, 10, devices=1, platform="gpu", span_seeds=True)
  four = plan.estimate_memory(spec, 10, devices=4, platform="gpu", span_seeds=True)
  assert four < one


def test_host_estimate_counts_every_device_chunk():
  """Host devices share one RAM: two devices' chunks count twice."""
  spec = _paper_n2()
  one = plan.estimate_memory(spec, 80, devices=1)
  two = plan.estimate_memory(spec, 80, devices=2)
  per_chunk = 80 * plan.model_step_bytes(spec)
  assert two - one >= per_chunk


@pytest.mark.parametrize("fields, chunk", [
    (dict(n=10, m=5, densities=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001), seeds=(0, 1, 2),
          steps=20, log_every=10, activations=("relu", "solu")), None),
    (dict(n=200, m=20, densities=(1.0, 0.3, 0.1, 0.05), importance_kind="uniform",
          importances=(1.0,), steps=10, log_every=5, activations=("relu",)), None),
    (dict(n=200, m=20, densities=(1.0, 0.3, 0.1, 0.05), importance_kind="uniform",
          importances=(1.0,), steps=10, log_every=5, activations=("relu",)), 1),
])
def test_memory_estimate_against_xla_buffer_assignment(fields, chunk):
  """`estimate_memory` against what XLA's buffer assignment of the compiled program says
  it needs (`memory_analysis()`: temporaries, arguments, outputs; per device program,
  times the devices that share the host's RAM): never under half of it (a budget must not
  be overrun by much) and at most three times it (small models' evaluations fuse better
  than the estimate assumes)."""
  spec = SweepSpec(**fields)
  layout = sweep.layout_for(spec, chunk_size=chunk)
  compiled, _ = sweep.compile_plan(layout)
  ma = compiled.memory_analysis()
  xla = (ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes) * len(layout.devices)
  assert 0.5 <= layout.estimated_bytes / xla <= 3.0, (layout.estimated_bytes, xla)


def _dots(text):
  return re.findall(r"stablehlo\.dot_general.*?precision = \[(\w+), (\w+)\]", text)


@pytest.mark.parametrize("model", ["bottleneck", "privileged", "abs"])
def test_every_dot_at_the_pinned_precision(model):
  """The lowered training program (training, evaluation, metrics) has every dot at
  HIGHEST by default; --matmul-precision tensorfloat32 lowers them all to HIGH."""
  spec = SweepSpec(n=6, m=3, model=model, activations=("relu", "solu"), densities=(1.0, 0.1),
                   seeds=(0, 1), steps=10, **TINY)
  for precision, want in (("float32", "HIGHEST"), ("tensorfloat32", "HIGH")):
    layout = sweep.layout_for(spec, matmul_precision=precision)
    dots = _dots(sweep.lower_plan(layout).as_text())
    assert len(dots) >= 4, dots
    assert all(p == (want, want) for p in dots), (precision, set(dots))


def test_precision_is_recorded_and_checked():
  res = sweep.run(N2, progress=False)
  assert res.meta["engine"]["precision"] == "float32"
  with pytest.raises(SpecError, match="matmul precision must be one of"):
    sweep.run(N2, matmul_precision="float16")


def test_cpu_flags_only_for_cpu(monkeypatch):
  """--backend gpu/tpu sets no XLA flag; CPU sets host splitting and the YNNPACK flag,
  each only where the running jaxlib knows it."""
  from superpos_jax import host
  assert host.xla_defaults("gpu") == {} and host.xla_defaults("tpu") == {}
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
  cli.configure_host("gpu")
  assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
  cpu = host.xla_defaults("cpu")
  assert "xla_force_host_platform_device_count" in cpu  # every jaxlib knows it
  assert not host.xla_knows("xla_cpu_no_such_flag_anywhere")
  monkeypatch.setattr(host, "xla_knows", lambda flag: "ynn" not in flag)
  assert set(host.xla_defaults("cpu")) == {"xla_force_host_platform_device_count"}


def test_autotune_picks_a_measured_candidate_and_remembers(tmp_path, monkeypatch):
  """autotune times every candidate once, picks the fastest, records the rates, and the
  same (devices, static spec) is not measured again; another grid shape is."""
  monkeypatch.setenv("SUPERPOS_JAX_CACHE", str(tmp_path))
  timed = []

  def fake_measure(layout, window_steps=None):
    timed.append(layout)
    return 1000.0 + 10 * layout.chunk_size  # the largest chunk wins
  monkeypatch.setattr(autotune, "measure", fake_measure)
  layouts = autotune.candidates(N2, jax.devices())
  assert layouts[0] == plan.make_plan(N2, devices=jax.devices())  # the default first
  chosen = autotune.autotune(N2, jax.devices())
  assert len(timed) == len(layouts)
  assert chosen.chunk_size == max(l.chunk_size for l in layouts)
  assert chosen.autotuned["remembered"] is False and len(chosen.autotuned["rates"]) == len(layouts)
  again = autotune.autotune(N2, jax.devices())
  assert len(timed) == len(layouts) and again == chosen and again.autotuned["remembered"]
  autotune.autotune(SweepSpec(**dict(N2.to_dict(), seeds=(0, 1))), jax.devices())
  assert len(timed) > len(layouts)


def test_auto_chunk_size_trains_the_same_numbers(tmp_path, monkeypatch):
  """run(chunk_size="auto") really measures, trains with the chosen layout, records it,
  and gives the default layout's numbers to float rounding."""
  monkeypatch.setenv("SUPERPOS_JAX_CACHE", str(tmp_path))
  auto = sweep.run(N2, chunk_size="auto", progress=False)
  tuned = auto.meta["engine"]["autotune"]
  assert tuned["chosen"] in tuned["rates"] and all(r > 0 for r in tuned["rates"].values())
  default = sweep.run(N2, progress=False)
  np.testing.assert_allclose(auto["W"], default["W"], rtol=1e-5, atol=1e-6)


def test_one_plan_handed_down():
  """run(spec, plan=layout) trains with that layout, bit for bit what run(spec) gives for
  the same layout; layout arguments beside a plan, or a plan of another spec, fail."""
  layout = sweep.layout_for(N2, chunk_size=7)
  a = sweep.run(N2, plan=layout, progress=False)
  b = sweep.run(N2, chunk_size=7, progress=False)
  assert a.meta["engine"]["chunk_size"] == 7
  assert np.array_equal(a["W"], b["W"])
  with pytest.raises(SpecError, match="leave chunk_size unset"):
    sweep.run(N2, plan=layout, chunk_size=3)
  with pytest.raises(SpecError, match="made for this spec"):
    sweep.run(SweepSpec(**dict(N2.to_dict(), steps=20)), plan=layout)


def test_progress_counts_this_process_devices_only(monkeypatch):
  """On several hosts a process hears only its own devices' ticks."""
  layout = plan.Plan(N2, 4, (FakeDevice("cpu", 0), FakeDevice("cpu", 1)))
  assert sweep.progress_ticks(layout) == N2.steps // N2.log_every
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert sweep.progress_ticks(plan.Plan(N2, 4, (FakeDevice("cpu", 1),) * 3)) == 3 * 2


def test_layouts_benchmark_rows():
  """benchmarks/layouts.py times the default and the autotuned layout of a workload in
  full and reports both, with the candidates autotune measured."""
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "benchmarks"))
  import layouts
  row = layouts.compare(N2, jax.devices(), repeats=1)
  assert row["default"]["layout"]["chunk_size"] == plan.make_plan(N2, devices=jax.devices()).chunk_size
  assert row["default"]["model_steps_per_s"] > 0 and row["autotuned"]["model_steps_per_s"] > 0
  assert len(row["candidates"]) >= 2
  table = layouts.markdown({"n2": row})
  assert f"| n2 | {N2.num_models} x 10 |" in table
