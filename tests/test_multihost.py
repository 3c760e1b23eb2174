"""Two JAX processes on loopback (CPU, gloo collectives) train one grid together."""

import glob
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from superpos_jax import results, sweep
from superpos_jax.spec import SweepSpec

SPEC = dict(n=3, m=2, activations=("relu", "tanh"), densities=(1.0, 0.3, 0.1), seeds=(0, 1),
            steps=20, log_every=10, batch_size=64, eval_size=256)

WORKER = textwrap.dedent("""
    import sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=pid)
    from superpos_jax import results, sweep
    from superpos_jax.spec import SweepSpec
    assert jax.process_count() == 2 and len(jax.devices()) == 2
    res = sweep.run(SweepSpec(**%r), progress=False)
    if pid == 0:
      results.save(res, out)
""" % (SPEC,))


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_two(commands, env):
  """Runs two processes together; their logs (stdout and stderr), asserting both exit 0."""
  procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for c in commands]
  try:
    logs = [p.communicate(timeout=240)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  assert all(p.returncode == 0 for p in procs), "\n".join(l[-2000:] for l in logs)
  return logs


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_two_processes_equal_one(tmp_path):
  """The grid sharded over 2 processes x 1 device equals the single-process run."""
  out = tmp_path / "multi.npz"
  port = str(_free_port())
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  _run_two([[sys.executable, "-c", WORKER, port, str(i), str(out)] for i in range(2)], env)
  multi = results.load(out)
  assert multi.meta["engine"]["devices"] == 2
  single = sweep.run(SweepSpec(**SPEC), progress=False)
  for k in single.data:
    np.testing.assert_allclose(multi[k], single[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_cli_processes_decide_together(tmp_path):
  """Through the CLI, two processes whose caches and memory budgets differ still take one
  decision: process 0 holds a cached result and process 1 none, so both train (one
  process alone reusing its file would leave the other hanging in a collective), with
  the smaller budget, and the result equals the single-process one."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = os.path.join(repo, "experiments", "phase_diagram.py")
  base = [sys.executable, script, "--preset", "quick", "--steps", "20", "--seeds", "1",
          "--activations", "relu", "--no-plot"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  outs = [tmp_path / "p0", tmp_path / "p1"]
  single = subprocess.run(base + ["--out", str(outs[0]), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=240)
  assert single.returncode == 0, single.stderr
  cached = list(outs[0].glob("*.npz"))
  assert len(cached) == 1
  port = str(_free_port())
  logs = _run_two([base + ["--out", str(outs[i]), "--coordinator", f"127.0.0.1:{port}",
                           "--num-processes", "2", "--process-id", str(i),
                           "--max-memory", ("4" if i else "8")] for i in range(2)], env)
  assert "another process has no cached result" in logs[0] and "training" in logs[1]
  assert "reusing" not in logs[0]
  multi = results.load(str(cached[0]))  # process 0 rewrote it
  assert multi.meta["engine"]["devices"] == 2 * (os.cpu_count() or 1)  # both hosts' devices
  assert all("memory budget 4.00 GiB" in log for log in logs), logs  # the smaller one


def _wait_for(predicate, procs, timeout):
  deadline = time.monotonic() + timeout
  while not predicate() and all(p.poll() is None for p in procs) and time.monotonic() < deadline:
    time.sleep(0.05)
  return predicate()


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_two_processes_killed_and_restarted_resume_bit_for_bit(tmp_path):
  """Two CLI processes checkpoint into one shared --out; process 1 is SIGKILLed mid-run,
  process 0 is aborted by JAX's coordination service (its heartbeat timeout) with a
  non-zero exit and no result; both restarted with the same command resume together from
  the last checkpoint and end with the uninterrupted two-process run's arrays, byte for
  byte (and the one-process run's, to float rounding)."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  base = [sys.executable, os.path.join(repo, "experiments", "phase_diagram.py"), "--preset",
          "quick", "--activations", "relu,tanh", "--steps", "3000", "--seeds", "1",
          "--no-plot", "--checkpoint-every", "0", "--heartbeat-timeout", "5"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")

  def command(out, port, i):
    return base + ["--out", str(out), "--coordinator", f"127.0.0.1:{port}",
                   "--num-processes", "2", "--process-id", str(i)]

  ref, out = tmp_path / "ref", tmp_path / "killed"
  port = _free_port()
  _run_two([command(ref, port, i) for i in range(2)], env)
  port = _free_port()
  procs = [subprocess.Popen(command(out, port, i), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    steps = lambda: [d for d in glob.glob(str(out / "*.ckpt" / "*")) if os.path.basename(d).isdigit()]
    assert _wait_for(lambda: len(steps()) >= 2, procs, 300), "no checkpoint to resume from"
    assert all(p.poll() is None for p in procs), "the run ended before it could be killed"
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    survivor = procs[0].wait(timeout=120)  # the coordination service aborts it
  finally:
    for p in procs:
      p.kill()
      p.communicate()
  assert survivor != 0
  assert not glob.glob(str(out / "*.npz"))
  port = _free_port()
  logs = _run_two([command(out, port, i) for i in range(2)], env)
  assert all("resumed from step" in log and "of 3,000" in log for log in logs), logs
  (a,), (b,) = glob.glob(str(ref / "*.npz")), glob.glob(str(out / "*.npz"))
  uninterrupted, resumed = results.load(a), results.load(b)
  assert set(uninterrupted.data) == set(resumed.data)
  for k in uninterrupted.data:
    assert uninterrupted[k].tobytes() == resumed[k].tobytes(), k
  assert not glob.glob(str(out / "*.ckpt"))
  single = sweep.run(resumed.spec, progress=False)
  for k in ("W", "b", "eval_loss"):
    np.testing.assert_allclose(resumed[k], single[k], rtol=1e-4, atol=1e-5, err_msg=k)


def one_and_two_processes(base, tmp_path, pattern="*.npz"):
  """Runs the command `base` in one process (into tmp/one) and in two loopback processes
  (tmp/two); the pairs of result files matching `pattern`, one-process file first."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  single = subprocess.run(base + ["--out", str(tmp_path / "one")], env=env, capture_output=True,
                          text=True, timeout=300)
  assert single.returncode == 0, single.stderr
  port = _free_port()
  _run_two([base + ["--out", str(tmp_path / "two"), "--coordinator", f"127.0.0.1:{port}",
                    "--num-processes", "2", "--process-id", str(i)] for i in range(2)], env)
  ones = sorted(glob.glob(str(tmp_path / "one" / pattern)))
  twos = sorted(glob.glob(str(tmp_path / "two" / pattern)))
  assert len(ones) == len(twos)
  return list(zip(ones, twos))


def test_an_experiment_of_several_specs_on_two_processes(tmp_path):
  """Was a bug: every experiment that trains more than one spec failed at its second on
  two processes (`jax.distributed` initialised again, the coordinator's port taken). Now
  the runtime is joined once per process: correlated_features (two specs) finishes on
  two loopback processes with the one-process run's arrays to float rounding."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  base = [sys.executable, os.path.join(repo, "experiments", "correlated_features.py"),
          "--preset", "quick", "--steps", "40", "--activations", "relu", "--no-plot", "--quiet"]
  pairs = one_and_two_processes(base, tmp_path)
  assert len(pairs) == 2
  for a, b in pairs:
    one, two = results.load(a), results.load(b)
    assert two.meta["engine"]["devices"] == 2
    for k in ("W", "b", "eval_loss"):
      np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
