"""The fault matrix: a CLI run killed at every point resumes and ends with an
uninterrupted run's arrays, and so does the rerun after that.

Axes (docs/robustness.md, "Guarantees and their tests"):
  kill point   checkpoint.saving (a save cut short: its partly written folder left behind),
               checkpoint.saved (mid-training), training.evaluating, result.saving,
               result.saved (`superpos_jax.faults`)
  steps        300 (a multiple of log_every = 50) or 320 (a partial last window)
  interval     a checkpoint after every window (--checkpoint-every 0) or the default
               interval (--checkpoint-every 300: staged, no checkpoint in so short a run)
  layout       the same on the rerun, another chunk size, another device count
  processes    one, or two on loopback (one of them killed)

In this process a kill is an exception raised at the point (nothing after it runs, as
after SIGKILL: what is on disk is what a killed process leaves). The cells with another
device count or two processes start real processes and SIGKILL them
(`SUPERPOS_JAX_KILL_AT`). A few cells run by default; `--runslow` runs the whole matrix
(about 10 minutes on the 2-core CPU).
"""

import importlib.util
import itertools
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from superpos_jax import cli, faults, results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "experiments", "phase_diagram.py")
BASE = ["--preset", "quick", "--activations", "relu,tanh", "--seeds", "2", "--no-plot",
        "--quiet"]
STEPS = (300, 320)
INTERVALS = ("0", "300")
LAYOUTS = ("same", "chunk")


def load_experiment(script, name):
  """The experiment script at `script` as a module called `name` (its `main`, `PARSER`)."""
  spec = importlib.util.spec_from_file_location(name, script)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


EXPERIMENT = load_experiment(SCRIPT, "fault_matrix_phase_diagram")


class Killed(BaseException):
  """What a kill leaves: nothing after the point runs (not caught by `cli.run`)."""


def _cells():
  """(point, pass, steps, interval, layout) of every in-process cell."""
  out = []
  for steps, interval, layout in itertools.product(STEPS, INTERVALS, LAYOUTS):
    points = ([("checkpoint.saving", 3), ("checkpoint.saved", 2)] if interval == "0" else [])
    points += [("training.evaluating", 1), ("result.saving", 1), ("result.saved", 1)]
    out += [(p, k, steps, interval, layout) for p, k in points]
  return out


# A covering subset for the default suite: every point, step count, interval and layout.
DEFAULT = {("checkpoint.saving", 3, 320, "0", "same"), ("checkpoint.saved", 2, 300, "0", "chunk"),
           ("checkpoint.saved", 2, 320, "0", "same"), ("training.evaluating", 1, 300, "300", "same"),
           ("result.saving", 1, 320, "300", "chunk"), ("result.saved", 1, 300, "0", "same")}


def _ids(cell):
  point, k, steps, interval, layout = cell
  return f"{point}#{k}-{steps}steps-every{interval}-{layout}"


def _params():
  return [pytest.param(c, id=_ids(c), marks=() if c in DEFAULT else pytest.mark.slow)
          for c in _cells()]


def _argv(out, steps, *extra):
  return BASE + ["--out", str(out), "--steps", str(steps), *extra]


def kill_at(kill, monkeypatch):
  """Makes `faults.point` raise `Killed` at the k-th pass of the point `kill=(point, k)`
  (None: never)."""
  passes = []

  def point(name):
    if kill and name == kill[0]:
      passes.append(name)
      if len(passes) == kill[1]:
        raise Killed(name)
  monkeypatch.setattr(faults, "point", point)


def _run(argv, kill=None, monkeypatch=None):
  """`phase_diagram.main(argv)` in this process; `kill=(point, k)` raises `Killed` at the
  point's k-th pass. Returns the exit status (the kill is asserted to have happened)."""
  kill_at(kill, monkeypatch)
  if kill is None:
    return cli.run(EXPERIMENT.main, argv)
  with pytest.raises(Killed):
    cli.run(EXPERIMENT.main, argv)
  return None


def _result(out):
  (path,) = [p for p in os.listdir(out) if p.endswith(".npz")]
  return results.load(os.path.join(out, path))


def _equal(a, b, exact):
  assert set(a.data) == set(b.data)
  for k in a.data:
    if exact:
      assert a[k].tobytes() == b[k].tobytes(), k
    elif a[k].dtype.kind == "f":
      np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=1e-6, err_msg=k)
    elif k != "phase":  # a phase may flip where a norm sits on a threshold
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Uninterrupted, unstaged runs of every step count, in this process."""
  out = {}
  for steps in STEPS:
    folder = tmp_path_factory.mktemp(f"ref{steps}")
    assert cli.run(EXPERIMENT.main, _argv(folder, steps, "--no-checkpoint")) == 0
    out[steps] = _result(folder)
  return out


def _leave_partial_save(out):
  """What a kill in the middle of orbax's write leaves: the next checkpoint's temporary
  folder, partly written."""
  (ckpt,) = [p for p in os.listdir(out) if p.endswith(".ckpt")]
  folder = os.path.join(out, ckpt)
  done = [int(d) for d in os.listdir(folder) if d.isdigit()]
  partial = os.path.join(folder, f"{max(done) + 1}.orbax-checkpoint-tmp")
  shutil.copytree(os.path.join(folder, str(max(done))), partial)
  for root, _, files in os.walk(partial):
    for f in files:
      with open(os.path.join(root, f), "r+b") as fh:
        fh.truncate(os.path.getsize(os.path.join(root, f)) // 2)


@pytest.mark.parametrize("cell", _params())
def test_killed_run_resumes(cell, tmp_path, reference, monkeypatch, capfd):
  point, k, steps, interval, layout = cell
  first = _argv(tmp_path, steps, "--checkpoint-every", interval)
  rerun = first + (["--chunk-size", "5"] if layout == "chunk" else [])
  _run(first, kill=(point, k), monkeypatch=monkeypatch)
  if point == "checkpoint.saving":
    _leave_partial_save(tmp_path)
  capfd.readouterr()
  assert _run(rerun, monkeypatch=monkeypatch) == 0, capfd.readouterr().err
  err = capfd.readouterr().err
  if point.startswith("checkpoint") or (point == "training.evaluating" and interval == "0"):
    assert "resumed from step" in err
    assert ("bit for bit" in err) == (layout == "same"), err
  resumed = _result(tmp_path)
  _equal(resumed, reference[steps], exact=layout == "same")
  assert _run(rerun, monkeypatch=monkeypatch) == 0  # the rerun after that reuses it
  _equal(_result(tmp_path), resumed, exact=True)
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".ckpt")]


def _cli(out, steps, *extra):
  return [sys.executable, SCRIPT, *_argv(out, steps, *extra)]


def _env(devices, kill=None, process=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  env.pop("SUPERPOS_JAX_KILL_AT", None)
  if kill:
    env["SUPERPOS_JAX_KILL_AT"] = kill
  if process is not None:
    env["SUPERPOS_JAX_KILL_PROCESS"] = str(process)
  return env


def _proc(cmd, env):
  return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("point,steps", [
    pytest.param("checkpoint.saved#2", 320, id="saved#2-320steps"),
    pytest.param("training.evaluating", 300, id="evaluating-300steps", marks=pytest.mark.slow),
    pytest.param("result.saving", 320, id="result.saving-320steps", marks=pytest.mark.slow),
])
def test_sigkilled_on_two_devices_resumes_on_one(point, steps, tmp_path):
  """SIGKILLed on two host devices, rerun on one (and again): exit 0, the arrays of an
  uninterrupted one-device run to float rounding; the console says it is not bit for bit."""
  ref = _proc(_cli(tmp_path / "ref", steps, "--no-checkpoint"), _env(1))
  assert ref.returncode == 0, ref.stderr
  out = tmp_path / "run"
  killed = _proc(_cli(out, steps, "--checkpoint-every", "0"), _env(2, kill=point))
  assert killed.returncode == -9, killed.stderr
  reruns = [_proc(_cli(out, steps, "--checkpoint-every", "0"), _env(1)) for _ in range(2)]
  assert all(r.returncode == 0 for r in reruns), reruns[-1].stderr
  if point.startswith("checkpoint") or point == "training.evaluating":
    assert "continued with chunks" in reruns[0].stderr, reruns[0].stderr
    assert "float rounding" in reruns[0].stderr
  _equal(_result(out), _result(tmp_path / "ref"), exact=False)
  assert not [p for p in os.listdir(out) if p.endswith(".ckpt")]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two(out, steps, kill=None, extra=()):
  """Two CLI processes on loopback, one device each; process 1 SIGKILLed at `kill`
  (process 0 then aborted by the coordination service). Their exit statuses."""
  port = _free_port()
  procs = [subprocess.Popen(_cli(out, steps, "--checkpoint-every", "0", "--coordinator",
                                 f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
                                 str(i), "--heartbeat-timeout", "5", *extra),
                            env=_env(1, kill=kill, process=1 if kill else None),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  try:
    errs = [p.communicate(timeout=600)[1] for p in procs]
  finally:
    for p in procs:
      p.kill()
  return [p.returncode for p in procs], errs


@pytest.mark.slow
@pytest.mark.parametrize("point", ["checkpoint.saved#2", "training.evaluating"])
def test_two_processes_one_killed_resume_on_one(point, tmp_path):
  """Two loopback processes, process 1 SIGKILLed: both end non-zero and leave no result;
  the same command on ONE process resumes the two-process checkpoint (another layout)
  and ends with the one-process run's arrays to float rounding; the rerun after that too."""
  ref = _proc(_cli(tmp_path / "ref", 320, "--no-checkpoint"), _env(1))
  assert ref.returncode == 0, ref.stderr
  out = tmp_path / "run"
  codes, errs = _two(out, 320, kill=point)
  assert codes[1] == -9 and codes[0] != 0, errs
  assert not [p for p in os.listdir(out) if p.endswith(".npz")]
  for _ in range(2):
    again = _proc(_cli(out, 320, "--checkpoint-every", "0"), _env(1))
    assert again.returncode == 0, again.stderr
  _equal(_result(out), _result(tmp_path / "ref"), exact=False)
