"""Checkpoints: a killed run resumes bit for bit, a wrong checkpoint is never trusted."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from superpos_jax import checkpoint, faults, provenance, results, sweep
from superpos_jax.spec import SpecError, SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = dict(n=6, m=3, activations=("relu", "tanh"), densities=(1.0, 0.1, 0.01), seeds=(0, 1),
            steps=60, log_every=10, batch_size=64, eval_size=256)


def _same(a, b):
  assert set(a.data) == set(b.data)
  for k in a.data:
    assert a[k].tobytes() == b[k].tobytes(), k


@pytest.fixture(scope="module")
def plain():
  return sweep.run(SweepSpec(**SPEC), progress=False)


def test_staged_with_checkpoints_equals_one_call(tmp_path, plain):
  """Stages with a checkpoint after each give the one-call arrays byte for byte, and the
  checkpoint left behind holds the finished state: a rerun only evaluates."""
  res = sweep.run(SweepSpec(**SPEC), progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=0)
  _same(res, plain)
  assert res.meta["engine"]["staged"]["checkpoints_saved"] == 6
  again = sweep.run(SweepSpec(**SPEC), progress=False, checkpoint_dir=str(tmp_path))
  assert again.meta["engine"]["staged"]["resumed_from_step"] == SPEC["steps"]
  _same(again, plain)


def _latest(folder):
  return max((int(d) for d in os.listdir(folder) if d.isdigit()), default=None)


def _resume(tmp_path, capfd, spec=None, **kw):
  """A run on tmp_path's checkpoints; (result, stderr)."""
  res = sweep.run(spec or SweepSpec(**SPEC), progress=False, checkpoint_dir=str(tmp_path), **kw)
  return res, capfd.readouterr().err


class Killed(BaseException):
  pass


def _checkpointed(tmp_path, steps, monkeypatch=None):
  """SPEC's checkpoints as a run killed right after its checkpoint at `steps` leaves them."""
  passes = []

  def die_after(name):
    if name == "checkpoint.saved":
      passes.append(name)
      if len(passes) * SPEC["log_every"] >= steps:
        raise Killed()
  real = faults.point
  faults.point = die_after
  try:
    with pytest.raises(Killed):
      sweep.run(SweepSpec(**SPEC), progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=0)
  finally:
    faults.point = real


def test_resume_from_a_middle_checkpoint(tmp_path, capfd, plain):
  _checkpointed(tmp_path, 30)
  capfd.readouterr()
  res, err = _resume(tmp_path, capfd)
  assert "resumed from step 30 of 60" in err
  _same(res, plain)


def test_checkpoint_of_another_spec_is_ignored(tmp_path, capfd):
  """Same shapes, other densities: another spec; trained from step 0, told why."""
  _checkpointed(tmp_path, 30)
  other = SweepSpec(**dict(SPEC, densities=(1.0, 0.2, 0.02)))
  capfd.readouterr()
  res, err = _resume(tmp_path, capfd, other)
  assert "ignored: it is of another spec (densities)" in err and "training from step 0" in err
  _same(res, sweep.run(other, progress=False))


def test_checkpoint_of_other_engine_code_is_ignored(tmp_path, capfd, plain, monkeypatch):
  _checkpointed(tmp_path, 30)
  monkeypatch.setattr(provenance, "engine_code", lambda root="sweep": "edited")
  capfd.readouterr()
  res, err = _resume(tmp_path, capfd)
  assert "ignored: it is of other engine code" in err
  _same(res, plain)


def test_checkpoint_of_another_layout_resumes_to_float_rounding(tmp_path, capfd, plain):
  """Checkpoints are in grid order: another chunk size resumes (and says it is not bit
  for bit), then the same layout's rerun only evaluates."""
  _checkpointed(tmp_path, 30)
  capfd.readouterr()
  res, err = _resume(tmp_path, capfd, chunk_size=1)
  assert "resumed from step 30 of 60" in err and "continued with chunks of 1" in err
  assert "to float rounding" in err
  np.testing.assert_allclose(res["W"], plain["W"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(res["loss_history"], plain["loss_history"], rtol=1e-5, atol=1e-7)


def test_resume_prefers_the_layout_the_run_started_with(tmp_path, capfd, plain):
  """Killed on chunks of 1, rerun without a chunk size: the checkpoint's layout is
  taken up again, so the arrays are those of an uninterrupted chunks-of-1 run, bit for bit."""
  spec = SweepSpec(**SPEC)
  real = faults.point

  def die(name, seen=[]):
    if name == "checkpoint.saved":
      seen.append(1)
      if len(seen) == 3:
        raise Killed()
  faults.point = die
  try:
    with pytest.raises(Killed):
      sweep.run(spec, progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=0, chunk_size=1)
  finally:
    faults.point = real
  capfd.readouterr()
  res, err = _resume(tmp_path, capfd)
  assert "resumed from step 30 of 60" in err and "the same layout" in err
  assert res.meta["engine"]["chunk_size"] == 1
  _same(res, sweep.run(spec, progress=False, chunk_size=1))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_corrupt_latest_checkpoint_falls_back_to_the_one_before(tmp_path, capfd, plain, damage):
  """The latest checkpoint's array files cut short, overwritten or removed: ignored
  with one line, the one before is resumed, the arrays are still the one-call ones."""
  _checkpointed(tmp_path, 40)
  latest = tmp_path / str(_latest(tmp_path))
  files = [f for f in glob.glob(str(latest / "state" / "**" / "*"), recursive=True)
           if os.path.isfile(f) and os.path.getsize(f) > 0]
  assert files
  for f in files:
    if damage == "delete":
      os.unlink(f)
    else:
      size = os.path.getsize(f)
      with open(f, "r+b") as fh:
        if damage == "truncate":
          fh.truncate(size // 2)
        else:
          fh.write(os.urandom(size))
  capfd.readouterr()
  res, err = _resume(tmp_path, capfd)
  assert f"checkpoint {latest} ignored" in err and "trying the one before" in err
  assert "resumed from step 30 of 60" in err
  _same(res, plain)


def test_folder_too_small_fails_before_training(tmp_path, monkeypatch):
  layout = sweep.layout_for(SweepSpec(**SPEC))
  monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 10))
  with pytest.raises(SpecError, match=r"has 10 B free, its checkpoints need about .*--no-checkpoint"):
    checkpoint.check_room(str(tmp_path / "ckpt"), layout)
  assert checkpoint.state_bytes(layout) > 0


def test_cli_checkpoints_by_default_only_runs_of_some_work():
  """Without --checkpoint-every a run of a few seconds' work trains in one call and a
  larger one is checkpointed; --checkpoint-every checkpoints any run, --no-checkpoint none."""
  import argparse
  from superpos_jax import launch
  small = SweepSpec(**SPEC)
  large = SweepSpec(**dict(SPEC, steps=launch.CHECKPOINT_MIN_WORK))
  flags = lambda **kw: argparse.Namespace(**{"no_checkpoint": False, "checkpoint_every": None, **kw})
  assert not launch.wants_checkpoints(small, flags())
  assert launch.wants_checkpoints(large, flags())
  assert launch.wants_checkpoints(small, flags(checkpoint_every=0.0))
  assert not launch.wants_checkpoints(large, flags(no_checkpoint=True))


def _cli(out, *extra):
  return [sys.executable, os.path.join(REPO, "experiments", "phase_diagram.py"), "--preset",
          "quick", "--activations", "relu,tanh", "--steps", "3000", "--seeds", "1", "--no-plot",
          "--out", str(out), *extra]


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_sigkilled_run_resumes_bit_for_bit(tmp_path):
  """A CLI run SIGKILLed mid-training leaves no result and its checkpoints; rerunning the
  same command says where it resumes, ends with the uninterrupted run's arrays byte for
  byte, and removes its checkpoints once the result is saved."""
  ref = subprocess.run(_cli(tmp_path / "ref", "--no-checkpoint", "--quiet"), capture_output=True,
                       text=True, timeout=600)
  assert ref.returncode == 0, ref.stderr
  out = tmp_path / "killed"
  proc = subprocess.Popen(_cli(out, "--checkpoint-every", "0"), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 600
  ckpts = lambda: [d for d in glob.glob(str(out / "*.ckpt" / "*")) if os.path.basename(d).isdigit()]
  while len(ckpts()) < 2 and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed mid-way"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not glob.glob(str(out / "*.npz"))
  rerun = subprocess.run(_cli(out, "--checkpoint-every", "0"), capture_output=True, text=True,
                         timeout=600)
  assert rerun.returncode == 0, rerun.stderr
  assert "resumed from step" in rerun.stderr and "of 3,000" in rerun.stderr
  (a,), (b,) = glob.glob(str(tmp_path / "ref" / "*.npz")), glob.glob(str(out / "*.npz"))
  _same(results.load(a), results.load(b))
  assert not glob.glob(str(out / "*.ckpt"))


def test_checkpoint_cost_rows():
  """benchmarks/checkpoints.py times the one-call and the staged ways of a workload and
  counts the checkpoints each saved (every stage: all of them; default: none)."""
  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  import checkpoints
  spec = SweepSpec(**SPEC)
  ways = checkpoints.time_ways(spec, 1)
  assert ways["one call"]["checkpoints_saved"] == 0 and ways["staged, default"]["checkpoints_saved"] == 0
  assert ways["staged, every"]["checkpoints_saved"] == SPEC["steps"] // SPEC["log_every"]
  for r in ways.values():
    r["overhead_pct"] = 0.0
  assert "| w | 12 x 60 | staged, every | 6 |" in checkpoints.markdown(
      {"w": {"models": 12, "steps": 60, "ways": ways}})


def test_a_rerun_that_saves_beside_ignored_checkpoints_never_meets_their_steps(tmp_path, capfd):
  """Was a bug: a checkpoint ignored (another spec here; another layout, or damaged, in
  the issue) and a rerun saving again raised orbax's StepAlreadyExistsError, on every
  rerun. Saves are numbered by a counter that only grows: the rerun and the one after it
  finish, and the ignored checkpoints are removed at the first save."""
  _checkpointed(tmp_path, 30)
  before = sorted(int(d) for d in os.listdir(tmp_path) if d.isdigit())
  other = SweepSpec(**dict(SPEC, densities=(1.0, 0.2, 0.02)))
  for _ in range(2):
    res = sweep.run(other, progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=0)
  after = sorted(int(d) for d in os.listdir(tmp_path) if d.isdigit())
  assert min(after) > max(before) and len(after) == checkpoint.KEEP
  _same(res, sweep.run(other, progress=False))
