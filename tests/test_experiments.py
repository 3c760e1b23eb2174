"""End-to-end: every experiment script at the quick preset, and its bad-input handling."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from superpos_jax import results, theory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(name, *args, timeout=300):
  """Runs experiments/<name>.py in a fresh process; returns the CompletedProcess."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(REPO, "experiments", f"{name}.py"), *args],
                        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def dirs(tmp_path):
  return ["--out", str(tmp_path / "runs"), "--figures", str(tmp_path / "figs")]


# phase_diagram's by default; the other two behind --runslow (long: end-to-end runs,
# docs/usage.md, "Tests"), their code paths checked in process by test_generated,
# test_plotting and test_sweep.
@pytest.mark.parametrize("name, figures, n, m", [
    pytest.param("feature_matrices", ("gram", "norms", "neurons", "loss"), 10, 5,
                 marks=pytest.mark.slow),
    ("phase_diagram", ("classes", "continuous", "loss", "basins"), 2, 1),
    pytest.param("dims_per_feature", ("dstar", "feature_dims", "loss"), 200, 20,
                 marks=pytest.mark.slow),
])
def test_experiment_quick_writes_npz_and_figures(tmp_path, name, figures, n, m):
  """The quick preset trains, saves a valid npz of the right shapes and draws every figure."""
  proc = run_script(name, "--preset", "quick", "--quiet", *dirs(tmp_path))
  assert proc.returncode == 0, proc.stderr
  (path,) = glob.glob(str(tmp_path / "runs" / f"{name}-*.npz"))
  res = results.load(path)
  assert (res.spec.n, res.spec.m) == (n, m)
  grid = tuple(len(res.coords[a]) for a in results.AXES)
  assert res["W"].shape == grid + (m, n)
  assert res["loss_history"].shape == grid + (len(res.extra["history_steps"]),)
  assert ("phase" in res.data) == (n == 2)
  assert list(res.coords["activation"]) == ["linear", "relu", "gelu", "silu", "sigmoid", "tanh", "solu"]
  assert not res["diverged"].any()
  env = res.meta["env"]
  assert env["backend"] == "cpu" and env["jax"] and res.meta["timings"]["run_s"] > 0
  for fig in figures:
    png = tmp_path / "figs" / f"{name}_{fig}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png

  # Same command again reuses the file instead of training.
  again = run_script(name, "--preset", "quick", "--no-plot", *dirs(tmp_path))
  assert again.returncode == 0 and "reusing" in again.stdout


def test_input_batches_figure(tmp_path):
  proc = run_script("input_batches", "--figures", str(tmp_path))
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / "input_batches_batches.png").stat().st_size > 10_000


def test_relu_phase_matches_closed_form(tmp_path):
  """Trained ReLU n=2,m=1 models sit in Wattenberg's closed-form phase, away from boundaries.

  The best of 4 seeds stands for the optimum: with 2, the starts that paired starts give
  the lr=1e-2 points left 2 of 16 points in a local minimum (the closed form is the
  global one)."""
  proc = run_script("phase_diagram", "--preset", "quick", "--activations", "relu",
                    "--densities", "1,0.5,0.05,0.02", "--importances", "0.1,0.4642,2.154,10", "--lr", "1e-2",
                    "--steps", "2000", "--seeds", "4", "--no-plot", "--quiet", *dirs(tmp_path))
  assert proc.returncode == 0, proc.stderr
  (path,) = glob.glob(str(tmp_path / "runs" / "phase_diagram-*.npz"))
  res = results.load(path).reduce_seeds("best").sel(activation="relu", lr=1e-2,
                                                            weight_decay=0.01, init_scale=1.0)
  dens, imp = np.meshgrid(res.coords["density"], res.coords["importance"], indexing="ij")
  losses = np.sort(theory.relu_closed_form_losses(dens, imp), axis=-1)
  clearly_inside = (losses[..., 1] - losses[..., 0]) > 0.2 * losses[..., 0]
  assert clearly_inside.sum() >= 8
  expected = theory.relu_closed_form_phase(dens, imp)
  np.testing.assert_array_equal(res["phase"][clearly_inside], expected[clearly_inside])


@pytest.mark.parametrize("args, message", [
    (["--backend", "tpu"], "no 'tpu' backend"),
    (["--densities", "0.5,1.5"], "density must be in (0, 1]"),
    (["--densities", "0"], "density must be in (0, 1]"),
    (["--activations", "relu,swishy"], "unknown activation 'swishy'"),
    (["--steps", "-3"], "positive integer"),
    (["--backend", "quantum"], "invalid choice"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
  """Bad flags exit non-zero with a short message, never a traceback."""
  proc = run_script("phase_diagram", "--preset", "quick", "--no-plot", *dirs(tmp_path), *args)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  assert not glob.glob(str(tmp_path / "runs" / "*.npz"))


def test_corrupted_cached_result_is_retrained(tmp_path):
  """A damaged result file under the cache name is reported and replaced, not trusted."""
  args = ["--preset", "quick", "--activations", "relu", "--grid", "2", "--steps", "20",
          "--no-plot", "--quiet", *dirs(tmp_path)]
  assert run_script("phase_diagram", *args).returncode == 0
  (path,) = glob.glob(str(tmp_path / "runs" / "phase_diagram-*.npz"))
  with open(path, "wb") as f:
    f.write(b"not a zip file")
  proc = run_script("phase_diagram", *args)
  assert proc.returncode == 0, proc.stderr
  assert "training again" in proc.stderr
  results.load(path)  # valid again


def test_help_lists_activations_from_registry():
  """Every activation a fresh process registers is in --help (this process may hold
  test-registered ones the script cannot know)."""
  proc = run_script("feature_matrices", "--help")
  assert proc.returncode == 0
  fresh = subprocess.run([sys.executable, "-c", "from superpos_jax import activations; "
                          "print(' '.join(activations.names()))"], capture_output=True,
                         text=True, check=True).stdout.split()
  assert "relu" in fresh
  for name in fresh:
    assert name in proc.stdout


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_reproduce_all_quick_runs_every_step_and_records_timings(tmp_path):
  """The one command at the quick preset: every step ok, timings and peak memory in a file."""
  proc = run_script("reproduce_all", "--preset", "quick", "--quiet", *dirs(tmp_path), timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((tmp_path / "figs" / "reproduce_all_timings.json").read_text())
  assert [s["step"] for s in report["steps"]] == [
      "input_batches", "feature_matrices", "phase_diagram", "dims_per_feature"]
  assert all(s["exit_status"] == 0 and s["seconds"] > 0 for s in report["steps"])
  assert 0.1 < report["peak_memory_gib"] < 24
  assert len(glob.glob(str(tmp_path / "runs" / "*.npz"))) == 3
  # One explorer page per training step beside its figures, one plotly.js for all.
  pages = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "figs" / "*_explorer.html")))
  assert pages == [f"{s}_explorer.html" for s in ("dims_per_feature", "feature_matrices",
                                                  "phase_diagram")]
  assert os.path.getsize(tmp_path / "figs" / "plotly.min.js") > 1_000_000


def test_reproduce_all_checks_every_step_before_training(tmp_path):
  """A flag only the last training step would reject fails before the first one trains."""
  proc = run_script("reproduce_all", "--preset", "quick", "--r", "-1", *dirs(tmp_path))
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
  assert not glob.glob(str(tmp_path / "runs" / "*.npz"))
