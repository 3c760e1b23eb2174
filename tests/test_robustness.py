"""Typed errors of the API, interruptions and temp files, and the README's claims that
need a separate process: bit-identical reruns and the peak memory of a large n=2 grid."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from superpos_jax import plan, results, sweep
from superpos_jax.spec import SpecError, SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(n=3, m=2, activations=("relu", "tanh"), densities=(1.0, 0.1), seeds=(0, 1),
             steps=30, log_every=10, batch_size=64, eval_size=256)


# ---------------------------------------------------------------------------- typed errors

@pytest.mark.parametrize("fields, message", [
    (dict(weight_decays=("x",)), "weight_decays must be a sequence of float"),
    (dict(foo=1), "unknown SweepSpec field(s) 'foo'"),
    (dict(activations="relu"), "must be a sequence, e.g. ('relu',)"),
    (dict(seeds=range(3_000_000_000)), "at most 1,000,000"),
    (dict(steps=99999999999999999999), "below 2^31"),
    (dict(steps=2**31 - 1, log_every=1), "loss-history windows"),
    (dict(densities=(1e-8,)), "at least 2^-23"),
    (dict(lrs=0.1), "lrs must be a sequence of float"),
    (dict(seeds=(1.5,)), "seeds must be a sequence of int"),
    (dict(rng=3), "rng must be a string"),
    (dict(phase_encoded=None), "phase_encoded must be a number"),
])
def test_spec_errors_are_spec_errors(fields, message):
  """Every bad field gives a one-line SpecError (also a TypeError for old callers)."""
  with pytest.raises(SpecError) as e:
    SweepSpec(**dict(dict(n=2, m=1), **fields))
  assert message in str(e.value) and "\n" not in str(e.value)
  assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)


def test_run_rejects_wrong_argument_types():
  spec = SweepSpec(**SMALL)
  with pytest.raises(SpecError, match="expected a SweepSpec, got dict"):
    sweep.run(dict(SMALL))
  with pytest.raises(SpecError, match="jax.Device"):
    sweep.run(spec, devices=["cpu"])
  with pytest.raises(SpecError, match="max_memory must be a positive number"):
    sweep.run(spec, max_memory=-1)


def test_memory_budget_error_prints_sensible_sizes():
  spec = SweepSpec(n=200, m=20, activations=("relu",), steps=10)
  with pytest.raises(SpecError) as e:
    plan.make_plan(spec, devices=jax.devices()[:1], max_memory=1000)
  one = plan.estimate_memory(spec, 1)  # calibrated against XLA's buffer assignment: ~78 MiB
  assert 50 * 2**20 < one < 120 * 2**20
  assert f"about {plan.gib(one)}" in str(e.value) and "MiB" in plan.gib(one)
  assert "1000 B memory budget" in str(e.value)
  assert plan.gib(3 * 2**30) == "3.00 GiB" and plan.gib(0) == "0 B"


def _good_file(tmp_path):
  """A valid result file of SMALL, filled with zeros (the layout is what matters)."""
  spec = SweepSpec(**SMALL)
  grid, T = spec.grid_shape, len(spec.history_steps())
  per_model = {"m": spec.m, "n": spec.n, "history": T}
  data = {k: np.zeros(grid + tuple(per_model[d] for d in dims))
          for k, (dims, _) in results.SCHEMA.items() if k not in results.OPTIONAL}
  extra = {"importance_vectors": spec.importance_matrix(), "history_steps": spec.history_steps()}
  res = results.SweepResult(coords=spec.coords(), data=data, extra=extra,
                            meta={"spec": spec.to_dict()})
  return res, results.save(res, tmp_path / "good.npz")


def _with_meta(src, dst, meta):
  with np.load(src) as z:
    arrays = {k: z[k] for k in z.files}
  arrays["meta"] = np.asarray(json.dumps(meta))
  np.savez(dst, **arrays)
  return dst


def test_load_rejects_bad_meta_with_result_file_error(tmp_path):
  res, good = _good_file(tmp_path)
  meta = json.loads(str(np.load(good)["meta"]))
  cases = {
      "list": ([meta], "a JSON list"),
      "nospec": ({k: v for k, v in meta.items() if k != "spec"}, "no spec"),
      "badspec": (dict(meta, spec=dict(meta["spec"], steps=-1)), "invalid stored spec"),
      "unknownfield": (dict(meta, spec=dict(meta["spec"], foo=1)), "invalid stored spec"),
  }
  for name, (bad, message) in cases.items():
    path = _with_meta(good, tmp_path / f"{name}.npz", bad)
    with pytest.raises(results.ResultFileError, match=message):
      results.load(path)


# ---------------------------------------------------------------------------- temp files

def test_save_error_names_the_path(tmp_path):
  """A full disk while writing: the OSError names the result's path (ENOSPC has none)."""
  path = str(tmp_path / "r.npz")

  def full(f):
    raise OSError(errno.ENOSPC, "No space left on device")

  with pytest.raises(OSError) as e:
    results.write_atomically(path, full)
  assert e.value.filename == path and e.value.errno == errno.ENOSPC
  assert os.listdir(tmp_path) == []


def test_stale_temp_files_are_removed_by_the_next_save(tmp_path):
  """A killed writer's temp file goes (dead pid on this host, or untouched for an hour);
  a live writer's and a fresh one from another host stay."""
  host = socket.gethostname()
  dead = subprocess.Popen(["true"])
  dead.wait()  # its pid is now free
  names = {
      "dead": f".tmp-{dead.pid}@{host}@aa-r.npz",
      "alive": f".tmp-{os.getpid()}@{host}@bb-r.npz",
      "elsewhere": ".tmp-1@another-host@cc-r.npz",
      "old": ".tmp-0123456789ab-r.npz",  # the former naming, no pid
  }
  for name in names.values():
    (tmp_path / name).write_bytes(b"partial")
  hour_ago = time.time() - 2 * results.STALE_AFTER_S
  os.utime(tmp_path / names["old"], (hour_ago, hour_ago))
  results.write_atomically(str(tmp_path / "r.npz"), lambda f: f.write(b"done"))
  left = set(os.listdir(tmp_path))
  assert left == {"r.npz", names["alive"], names["elsewhere"]}


_SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    from superpos_jax import cli, results

    def slow_write(f):
      f.write(b"half a result")
      f.flush()
      time.sleep(60)

    sys.exit(cli.run(lambda _: results.write_atomically(sys.argv[1], slow_write)))
""")


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
  """SIGTERM mid-write: one line, temp file removed, nothing under the final name, 143."""
  path = tmp_path / "r.npz"
  proc = subprocess.Popen([sys.executable, "-c", _SIGTERM_SCRIPT, str(path)], cwd=REPO,
                          stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  deadline = time.time() + 60
  while not any(n.startswith(".tmp-") for n in os.listdir(tmp_path)):
    assert time.time() < deadline and proc.poll() is None, "the writer never started"
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  err = proc.communicate(timeout=30)[1]
  assert proc.returncode == 143
  assert err.strip().splitlines() == ["terminated (SIGTERM): no partial result was written"]
  assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- README claims

_RUN_SCRIPT = textwrap.dedent("""
    import sys
    from superpos_jax import results, sweep
    from superpos_jax.spec import SweepSpec
    results.save(sweep.run(SweepSpec(**%r), progress=False), sys.argv[1])
""" % (SMALL,))


def test_reruns_in_separate_processes_are_bit_identical(tmp_path):
  """README: the same spec on the same backend gives bit-identical arrays, across processes."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  paths = [str(tmp_path / f"run{i}.npz") for i in range(2)]
  procs = [subprocess.Popen([sys.executable, "-c", _RUN_SCRIPT, p], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, text=True) for p in paths]
  errs = [p.communicate(timeout=300)[1] for p in procs]
  assert all(p.returncode == 0 for p in procs), errs
  a, b = (results.load(p) for p in paths)
  assert set(a.data) == set(b.data)
  for k in a.data:
    assert a[k].tobytes() == b[k].tobytes(), k
  assert np.abs(a["W"]).max() > 0  # trained, not a trivial match


_PEAK_SCRIPT = textwrap.dedent("""
    from superpos_jax import cli
    cli.configure_host()
    import numpy as np
    from superpos_jax import sweep
    from superpos_jax.spec import SweepSpec
    # The README's n=2 grid (100 densities x 100 importances) with one seed: 10^4 models,
    # a tenth of the claim's, at the study's batch (1024) and eval size (16,384).
    spec = SweepSpec(n=2, m=1, activations=("relu",), importance_kind="relative",
                     densities=tuple(np.geomspace(1.0, 1e-3, 100)),
                     importances=tuple(np.geomspace(0.1, 10.0, 100)), seeds=(0,),
                     steps=20, log_every=10)
    res = sweep.run(spec, progress=False)
    assert res["W"].shape[:7] == spec.grid_shape
    with open("/proc/self/status") as f:
      print(next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:")))
""")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_large_n2_grid_peak_memory_under_1_gib():
  """README: a 10^5-model n=2 grid at batch 1024 needs well under 1 GiB. Measured (the
  process's own peak resident memory, jax and XLA included) on a tenth of that grid, which
  must then fit 1 GiB with room to spare; a full-size run would take minutes. (Was 4.2 GB
  while the evaluation set was built for every model at once; it is now built per chunk.)"""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  peak_mb = int(proc.stdout.split()[-1])
  assert peak_mb < 1024, peak_mb
