"""The study's open ends (SoLU's instance axis, sigmoid to convergence, the ε-sigmoid,
computation at TMS's size): their summary helpers on hand-built inputs, and each script's
quick preset end to end (npz, figures, summary JSON)."""

import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from superpos_jax import results, summary_beyond
from superpos_jax.spec import SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))


def test_gram_interference_is_the_mean_off_diagonal():
  W = np.array([[1.0, 0.5, 0.0], [0.0, 0.0, 2.0]])  # WᵀW off-diagonal: 0.5, 0, 0 (twice)
  np.testing.assert_allclose(summary_beyond.gram_interference(W), 1.0 / 6.0)
  np.testing.assert_allclose(summary_beyond.gram_interference(np.stack([W, 2 * W])),
                             [1.0 / 6.0, 4.0 / 6.0])


def test_dstar_variant_ends_and_order():
  v = summary_beyond.dstar_variant([0.05, 1.0, 0.3], [0.1, 0.9, 0.4], instances=3)
  assert v["instances"] == 3 and v["dstar_densest"] == 0.9 and v["dstar_sparsest"] == 0.1
  np.testing.assert_array_equal(v["densities"], [0.05, 0.3, 1.0])
  np.testing.assert_array_equal(v["dims_per_feature"], [0.1, 0.4, 0.9])


def test_instance_softmax_couples_the_instances():
  """A softmax over the instances axis makes one instance's result depend on another's
  density (the models of one tensor are not independent); with one instance it is the
  identity, so SoLU becomes the linear model and D* ≈ m / m = 1 once trained."""
  import study_checks
  spec = SweepSpec(n=6, m=2, activations=("solu",), densities=(1.0, 0.5, 0.1),
                   importance_kind="uniform", importances=(1.0,), steps=30, batch_size=64)
  base = study_checks.instance_softmax_dstar(spec)
  moved = study_checks.instance_softmax_dstar(dataclasses.replace(spec, densities=(1.0, 0.5, 0.02)))
  # Instance 0 sees the same init and uniforms either way: independent models would
  # give it bit-identical weights.
  assert len(base) == 3 and base[0] != moved[0]
  alone = dataclasses.replace(spec, densities=(1.0,), steps=600, lrs=(1e-2,))
  np.testing.assert_allclose(study_checks.instance_softmax_dstar(alone), [1.0], atol=0.05)


def _run(tmp_path, name, *flags):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", f"{name}.py"), "--preset", "quick",
       "--quiet", "--out", str(tmp_path / "runs"), "--figures", str(tmp_path / "figs"), *flags],
      capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
  assert proc.returncode == 0, proc.stderr
  for suffix in ("png",):
    for png in glob.glob(str(tmp_path / "figs" / f"*.{suffix}")):
      assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", png
  with open(tmp_path / "figs" / f"{name}_summary.json") as f:
    return json.load(f)


def _figures(tmp_path):
  return sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "figs" / "*.png")))


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_solu_instances_quick(tmp_path):
  out = _run(tmp_path, "solu_instances")
  variants = out["variants"]
  assert [v["instances"] for v in variants.values()] == [None, 6, 5]  # quick trains the contrast
  assert {v["init"] for v in variants.values()} == {"xavier_normal"}
  for v in variants.values():
    assert len(v["dims_per_feature"]) == len(v["densities"]) and v["dstar_densest"] > 0
    assert v["densities"] == sorted(v["densities"])
  assert out["study (read off its figure, not computed)"]["dstar_sparsest"] == 0.05
  assert _figures(tmp_path) == ["solu_instances_dstar.png"]


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_sigmoid_convergence_quick(tmp_path):
  out = _run(tmp_path, "sigmoid_convergence")
  assert list(out["n10"]) == list(out["n2"]) == ["100 steps", "300 steps"]
  for part in ("n10", "n2"):
    for run in out[part].values():
      assert run["activations"] == ["sigmoid"]
      assert run["convergence"]["to_step"] == run["steps"]
  assert out["n10"]["300 steps"]["mean |off-diagonal (W^T W)_ij|, best seed"]["sigmoid"][0] > 0
  same = out["n2"]["300 steps"]["same phase as the 100-step run"]
  assert 0 <= same["best seed"]["sigmoid"] <= 1 and 0 <= same["typical seed"]["sigmoid"] <= 1
  assert len(glob.glob(str(tmp_path / "runs" / "sigmoid_convergence-*.npz"))) == 4
  assert _figures(tmp_path) == sorted(
      f"sigmoid_convergence_{s}.png" for s in ("gram_100_steps", "gram_300_steps",
                                               "phase_100_steps", "phase_300_steps",
                                               "loss_n10", "loss_n2"))


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_stretched_sigmoid_quick(tmp_path):
  """Two of the preset's activations keep the three parts' compile time small."""
  acts = ["sigmoid", "sigmoid_stretched_0p3"]
  out = _run(tmp_path, "stretched_sigmoid", "--activations", ",".join(acts))
  assert out["stretches (activation: epsilon)"] == {
      "sigmoid_stretched_0p01": 0.01, "sigmoid_stretched": 0.1, "sigmoid_stretched_0p3": 0.3}
  assert out["n10"]["activations"] == out["n2"]["activations"] == out["n200"]["activations"] == acts
  assert set(out["n2"]["superposition_fraction"]["best seed"]) == set(acts)
  assert all(v > 0 for v in out["n200"]["dstar_ends"]["dims_per_feature"]["sigmoid_stretched_0p3"])
  for part in ("n10", "n2", "n200"):
    assert set(out[part]["convergence"]["median |relative loss change|"]) == set(acts)
  assert len(_figures(tmp_path)) == 5


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_computation_tms_quick(tmp_path):
  out = _run(tmp_path, "computation_tms", "--activations", "relu")
  assert out["experiment"] == "computation_tms" and (out["n"], out["m"]) == (100, 40)
  (path,) = glob.glob(str(tmp_path / "runs" / "computation_tms-*.npz"))
  assert results.load(path)["param_W2"].shape[-2:] == (100, 40)
  computed = np.asarray(out["computed features"]["relu"], np.float64)
  assert computed.shape == (2,) and np.all((computed >= 0) & (computed <= 100))
  assert _figures(tmp_path) == ["computation_tms_computed.png", "computation_tms_loss.png"]
