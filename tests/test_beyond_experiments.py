"""The "beyond the study" experiments: summary functions on hand-built weights, and each
script's quick preset end to end (npz, figures, summary JSON)."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from superpos_jax import probes, results, summary_beyond

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Two activations keep the four scripts' compile and drawing time within the test budget.
ACTS = ("relu", "tanh")


def test_features_per_neuron_counts_large_weights():
  W = np.array([[0.9, -0.6, 0.1], [0.0, 0.4, -0.51]])  # [m=2, n=3]
  np.testing.assert_array_equal(summary_beyond.features_per_neuron(W), [2, 1])
  np.testing.assert_array_equal(summary_beyond.features_per_neuron(W, threshold=0.95), [0, 0])


def test_pair_cosines_antipodal_orthogonal_and_unembedded():
  # Pair 0 antipodal, pair 1 orthogonal, pair 2 with one column too short to count.
  W = np.array([[1.0, -1.0, 1.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 2.0, 0.0, 0.4]])
  cos = summary_beyond.pair_cosines(W)
  np.testing.assert_allclose(cos[:2], [-1.0, 0.0], atol=1e-12)
  assert np.isnan(cos[2])
  mean, count = summary_beyond.mean_pair_cosine(np.stack([W, -W]))
  np.testing.assert_allclose(mean, [-0.5, -0.5], atol=1e-12)
  np.testing.assert_array_equal(count, [2, 2])
  none, zero = summary_beyond.mean_pair_cosine(np.zeros((3, 4)))
  assert np.isnan(none) and zero == 0


def test_computed_from_outputs_r2_landmarks():
  t = summary_beyond.PROBE_VALUES
  outputs = np.stack([np.abs(t), np.maximum(t, 0.0), np.full_like(t, np.abs(t).mean()),
                      np.full_like(t, np.nan)])  # [n=4, T]
  r2, count = summary_beyond.computed_from_outputs(outputs, t)
  np.testing.assert_allclose(r2[:3], [1.0, -1.0, 0.0], atol=0.02)
  assert np.isnan(r2[3]) and count == 1


def test_isolated_outputs_of_a_hand_built_abs_model():
  """Two ReLU neurons (+x_0, -x_0) summed by W₂ compute |x_0| exactly: R² = 1."""
  W = np.zeros((1, 2, 3), np.float32)
  W[0, 0, 0], W[0, 1, 0] = 1.0, -1.0
  W2 = np.zeros((1, 3, 2), np.float32)
  W2[0, 0] = 1.0
  out = probes.isolated_outputs({"W": W, "b": np.zeros((1, 3), np.float32), "W2": W2},
                                ["relu"], "abs", summary_beyond.PROBE_VALUES)
  assert out.shape == (1, 3, len(summary_beyond.PROBE_VALUES))
  np.testing.assert_allclose(out[0, 0], np.abs(summary_beyond.PROBE_VALUES), atol=1e-6)
  np.testing.assert_allclose(out[0, 1:], 0.0)
  r2, count = summary_beyond.computed_from_outputs(out)
  assert count[0] == 1 and r2[0, 0] == pytest.approx(1.0, abs=1e-6)


def _run(tmp_path, name):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", f"{name}.py"), "--preset", "quick",
       "--quiet", "--activations", ",".join(ACTS), "--out", str(tmp_path / "runs"),
       "--figures", str(tmp_path / "figs")],
      capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
  assert proc.returncode == 0, proc.stderr
  for path in glob.glob(str(tmp_path / "runs" / "*.npz")):
    res = results.load(path)
    assert list(res.coords["activation"]) == list(ACTS) and not res["diverged"].any()
  with open(tmp_path / "figs" / f"{name}_summary.json") as f:
    return json.load(f)


def _png(tmp_path, name, suffix):
  png = tmp_path / "figs" / f"{name}_{suffix}.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def _values(by_act):
  assert list(by_act) == list(ACTS)
  return np.array([v if v is not None else np.nan for v in np.ravel(list(by_act.values()))],
                  np.float64)


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_init_scale_quick(tmp_path):
  out = _run(tmp_path, "init_scale")
  for part, n in (("n2", 2), ("n200", 200)):
    (path,) = glob.glob(str(tmp_path / "runs" / f"init_scale-{part}-cpu-*.npz"))
    res = results.load(path)
    assert res.spec.n == n and len(res.coords["init_scale"]) == 4
  (path,) = glob.glob(str(tmp_path / "runs" / "init_scale-n2-long-*.npz"))
  long = results.load(path)
  assert long.coords["init_scale"].tolist() == [3.0] and long.spec.steps == 4 * 300
  key = "n2 at init scale 3, 1200 steps"
  assert out[key]["run"]["steps"] == 1200
  assert 0 <= out[key]["relu closed-form agreement"]["typical seed"] <= 1
  _png(tmp_path, "init_scale", "phase_alpha3_1200_steps")
  sup = out["superposition fraction, density < 0.1, by init scale"]
  dstar = out["dims_per_feature (densest, sparsest) by init scale"]
  assert list(sup) == list(dstar) == ["0.1", "0.3", "1", "3"]
  typical = out["superposition fraction, density < 0.1, by init scale, typical seed"]
  agree = out["relu closed-form agreement by init scale"]
  assert list(typical) == list(agree["best seed"]) == list(agree["typical seed"]) == list(sup)
  for alpha in sup:
    assert np.all((_values(sup[alpha]) >= 0) & (_values(sup[alpha]) <= 1))
    assert np.all((_values(typical[alpha]) >= 0) & (_values(typical[alpha]) <= 1))
    assert all(0 <= agree[rule][alpha] <= 1 for rule in agree)
    assert np.all(_values(dstar[alpha]) > 0) and len(dstar[alpha]["relu"]) == 2
    _png(tmp_path, "init_scale", f"phase_alpha{alpha}")
    _png(tmp_path, "init_scale", f"dstar_alpha{alpha}")
  for part in ("n2", "n200"):
    conv = out[f"{part} convergence: median |relative loss change| by init scale"]
    assert conv["to_step"] > conv["from_step"]
    assert all(np.all(_values(conv[alpha]) >= 0) for alpha in sup)
  _png(tmp_path, "init_scale", "overview")


def test_privileged_basis_quick(tmp_path):
  out = _run(tmp_path, "privileged_basis")
  assert out["model"] == "privileged" and (out["n"], out["m"]) == (10, 5)
  mean = _values(out["mean features per neuron"])
  poly = _values(out["fraction of neurons with >= 2 features"])
  assert mean.size == 2 * 7 and np.all((mean >= 0) & (mean <= 10))
  assert np.all((poly >= 0) & (poly <= 1))
  for suffix in ("gram", "neurons", "per_neuron", "loss"):
    _png(tmp_path, "privileged_basis", suffix)


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_correlated_features_quick(tmp_path):
  out = _run(tmp_path, "correlated_features")
  for data in ("correlated", "anticorrelated"):
    assert out[data]["data"] == data
    cos = _values(out[data]["mean pair cosine"])
    pairs = _values(out[data]["embedded pairs"])
    assert np.all(np.isnan(cos) | ((cos >= -1 - 1e-6) & (cos <= 1 + 1e-6)))
    assert np.all((pairs >= 0) & (pairs <= 5))
  for suffix in ("pairs", "gram_correlated", "gram_anticorrelated"):
    _png(tmp_path, "correlated_features", suffix)
  # The two-panel figure's caption names both data families, not only the first.
  from superpos_jax import plotting
  loaded = [results.load(p) for p in glob.glob(str(tmp_path / "runs" / "correlated_features*.npz"))]
  runs = {res.spec.data: res for res in loaded}
  title = plotting.figure_pair_cosines(runs["correlated"], runs["anticorrelated"])
  title = title._suptitle.get_text()
  assert "correlated (left) and anticorrelated (right)" in title, title


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_computation_quick(tmp_path):
  out = _run(tmp_path, "computation")
  assert out["model"] == "abs" and (out["n"], out["m"]) == (20, 10)
  (path,) = glob.glob(str(tmp_path / "runs" / "computation-*.npz"))
  assert results.load(path)["param_W2"].shape[-2:] == (20, 10)
  computed = _values(out["computed features"])
  assert computed.size == 2 * 4 and np.all((computed >= 0) & (computed <= 20))
  assert np.all(_values(out["eval loss"]) > 0)
  for suffix in ("computed", "loss"):
    _png(tmp_path, "computation", suffix)
