"""The SAE stage keeps the toy grid's guarantees now that it runs on the same engine
(docs/robustness.md): killed anywhere it resumes with an uninterrupted run's arrays, bit
for bit; a result that cannot be written is rescued; its cache and compiled program see
the data family's code and the toy stage's matmul precision; two processes train it
together.
"""

import dataclasses
import glob
import os
import sys

import jax
import numpy as np
import pytest

from superpos_jax import data, launch, plan, sweep
from superpos_jax.sae import results as sae_results
from superpos_jax.sae import stage
from superpos_jax.sae.spec import SAEGrid, SAESpec
from superpos_jax.spec import SweepSpec
from test_cli import full_disk_under
from test_faults import Killed, kill_at, load_experiment
from test_multihost import one_and_two_processes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "experiments", "sae_recovery.py")


EXPERIMENT = load_experiment(SCRIPT, "sae_guarantees_sae_recovery")
TOY = SweepSpec(n=6, m=3, activations=("relu", "gelu"), densities=(0.3, 0.05), seeds=(0,),
                steps=40, log_every=20, batch_size=64, eval_size=256)


def _sae(steps):
  return SAESpec(dict_multiples=(1, 2), l1s=(0.1,), sae_seeds=(0, 1), steps=steps, log_every=20,
                 batch_size=32, lr=3e-3, eval_size=256)


@pytest.fixture(scope="module")
def toy():
  return sweep.run(TOY, progress=False)


def _args(out, *extra):
  return EXPERIMENT.PARSER.parse_args(["--out", str(out), "--quiet", "--no-plot", *extra])


def _stage(toy, out, steps, *extra, kill=None, monkeypatch=None):
  """`sae.stage.train_or_load` as the experiment calls it; `kill=(point, k)` raises
  `Killed` at the point's k-th pass."""
  kill_at(kill, monkeypatch)
  call = lambda: stage.train_or_load("sae-test", toy, _sae(steps), _args(out, *extra))
  if kill is None:
    return call()
  with pytest.raises(Killed):
    call()
  return None


def _file(out):
  (path,) = glob.glob(os.path.join(out, "sae-test-*.npz"))
  return sae_results.load(path)


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory):
  """Uninterrupted, unstaged SAE stages, by step count (trained when first asked for)."""
  out = {}

  def of(steps):
    if steps not in out:
      folder = tmp_path_factory.mktemp(f"sae{steps}")
      mp = pytest.MonkeyPatch()
      _stage(toy, folder, steps, "--no-checkpoint", monkeypatch=mp)
      mp.undo()
      out[steps] = _file(folder)
    return out[steps]
  return of


CELLS = [("checkpoint.saved", 2, 70), ("training.evaluating", 1, 70), ("result.saved", 1, 70),
         ("checkpoint.saving", 2, 60), ("checkpoint.saved", 1, 60), ("result.saving", 1, 60)]


@pytest.mark.parametrize("point, k, steps", [
    pytest.param(*c, marks=() if c[2] == 70 else pytest.mark.slow) for c in CELLS])
def test_killed_sae_stage_resumes_bit_for_bit(point, k, steps, toy, reference, tmp_path,
                                             monkeypatch, capfd):
  """The fault matrix's SAE row: a checkpoint after every window, killed at each point,
  with a partial last window (70 steps; a whole number of windows, 60, with --runslow)."""
  _stage(toy, tmp_path, steps, "--checkpoint-every", "0", kill=(point, k), monkeypatch=monkeypatch)
  capfd.readouterr()
  resumed = _stage(toy, tmp_path, steps, "--checkpoint-every", "0", monkeypatch=monkeypatch)
  err = capfd.readouterr().err
  if point.startswith("checkpoint") or point == "training.evaluating":
    assert "resumed from step" in err, err
  ref = reference(steps)
  assert set(resumed.data) == set(ref.data)
  for name in ref.data:
    assert resumed[name].tobytes() == ref[name].tobytes(), name
  assert _file(tmp_path)["decoder"].tobytes() == ref["decoder"].tobytes()
  assert not glob.glob(os.path.join(tmp_path, "*.ckpt"))


def test_an_unwritable_sae_result_is_rescued(toy, tmp_path, monkeypatch):
  """Was a bug: the SAE stage had no rescue path; a full disk lost the trained SAEs."""
  rescue = tmp_path / "rescue"
  monkeypatch.setenv("SUPERPOS_JAX_RESCUE", str(rescue))
  full_disk_under(tmp_path / "runs", sae_results, monkeypatch)
  with pytest.raises(launch.SaveError, match="No space left on device") as e:
    _stage(toy, tmp_path / "runs", 70, "--no-checkpoint", monkeypatch=monkeypatch)
  (kept,) = glob.glob(str(rescue / "sae-test-*.npz"))
  assert kept in str(e.value)
  assert sae_results.load(kept).sae_spec == _sae(70)


def test_sae_identity_sees_toy_precision_and_data_code(toy):
  """Was a bug: the SAE cache ignored the toy stage's matmul precision, and its compiled
  program was cached by the data family's name (re-registering it reused the old one)."""
  grid = SAEGrid.of(toy, _sae(20))
  other = dataclasses.replace(toy, meta=dict(toy.meta, engine=dict(toy.meta["engine"], precision="bfloat16")))
  assert SAEGrid.of(other, _sae(20)).digest() != grid.digest()
  name = "sae_guarantees_data"
  data.register_data(name, data.independent, "a test data family", overwrite=True)
  spec = dataclasses.replace(TOY, data=name)
  first = SAEGrid(_sae(20), spec, "d", "float32", (1,), None, None, None)
  program = plan.make_plan(first, devices=jax.devices(), chunk_size=1)
  before = first.digest()
  data.register_data(name, lambda u, p: (u < p, 2.0 * u / p), "its code changed", overwrite=True)
  second = SAEGrid(_sae(20), spec, "d", "float32", (1,), None, None, None)
  assert second.digest() != before
  assert plan.make_plan(second, devices=jax.devices(), chunk_size=1) != program  # recompiled


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_the_sae_stage_on_two_processes(tmp_path):
  """Was a bug: the SAE stage failed after training on two processes (it read a global
  array on one host). sae_recovery finishes on two loopback processes with the
  one-process run's SAE arrays to float rounding."""
  base = [sys.executable, SCRIPT, "--preset", "quick", "--steps", "40", "--sae-steps", "40",
          "--activations", "relu", "--no-plot", "--quiet"]
  pairs = one_and_two_processes(base, tmp_path, "*-sae-*.npz")
  assert len(pairs) == 2
  for a, b in pairs:
    one, two = sae_results.load(a), sae_results.load(b)
    assert two.meta["engine"]["devices"] == 2
    for k in ("decoder", "max_cosine", "loss_history"):
      np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
