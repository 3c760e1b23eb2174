"""The summary functions on hand-built results whose answers are worked out by hand, and
the summary file the phase-diagram script writes beside its figures."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from superpos_jax import results, summary
from superpos_jax.phases import BOTH, FEATURE1, FEATURE2, PHASES
from superpos_jax.spec import SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_result(*, n=2, m=1, activations=("relu",), densities=(1.0,), importances=(1.0,),
                seeds=(0,), importance_kind="relative", steps=300, log_every=50, **arrays):
  """A SweepResult with the given per-model arrays (grid `[A, D, I, 1, S]` first: the
  weight-decay and init-scale axes, length 1, are inserted before S); eval_loss defaults
  to 1 and diverged to False."""
  spec = SweepSpec(n=n, m=m, activations=activations, densities=densities,
                   importance_kind=importance_kind, importances=importances, seeds=seeds,
                   steps=steps, log_every=log_every)
  data = {"eval_loss": np.ones(spec.grid_shape), "diverged": np.zeros(spec.grid_shape, bool)}
  data.update({k: np.expand_dims(np.asarray(v), (4, 5)) for k, v in arrays.items()})
  for k, v in data.items():
    assert v.shape[:7] == spec.grid_shape, (k, v.shape)
  extra = {"importance_vectors": spec.importance_matrix(), "history_steps": spec.history_steps()}
  return results.SweepResult(coords=spec.coords(), data=data, extra=extra,
                             meta={"spec": spec.to_dict()})


def grid(values):
  """`[A][D][I][S]` nested lists -> array `[A, D, I, 1, S]` (one lr)."""
  return np.asarray(values)[:, :, :, None]


def test_basin_statistics():
  """Phase fractions over the healthy seeds, (median − best) / best, NaN when all diverged."""
  nan = np.nan
  res = make_result(
      densities=(1.0, 0.1, 0.01), seeds=(0, 1, 2, 3),
      phase=grid([[[[BOTH, BOTH, FEATURE1, BOTH]], [[FEATURE2] * 4], [[BOTH] * 4]]]),
      eval_loss=grid([[[[1.0, 2.0, 4.0, nan]], [[2.0, 3.0, 5.0, 100.0]], [[nan] * 4]]]),
      diverged=grid([[[[False, False, False, True]], [[False] * 4], [[True] * 4]]]))
  basins = summary.basin_statistics(res)
  assert basins.phase_fraction.shape == (1, 3, 1, 1, len(PHASES))
  np.testing.assert_allclose(basins.phase_fraction[0, 0, 0, 0], [0, 1 / 3, 2 / 3, 0, 0], atol=1e-12)
  np.testing.assert_allclose(basins.phase_fraction[0, 1, 0, 0], [0, 0, 0, 1, 0], atol=1e-12)
  assert np.isnan(basins.phase_fraction[0, 2]).all()
  # Point 0: median of the healthy [1, 2, 4] is 2; point 1: median of 4 seeds is (3+5)/2.
  np.testing.assert_allclose(basins.loss_gap[0, :2, 0, 0], [1.0, 1.0], rtol=1e-12)
  assert np.isnan(basins.loss_gap[0, 2, 0, 0])
  np.testing.assert_array_equal(basins.seeds[0, :, 0, 0], [3, 4, 0])


def agreement_result():
  """densities (0.01, 1) x r (0.1, 1, 10). Closed form by hand (Wattenberg's losses
  `r(s/3 − s²/4)`, `(1+r)s²/6`, `s/3 − s²/4`): at s = 0.01 superposition everywhere;
  at s = 1, feature 1 (r = 0.1), a tie of the single features (r = 1: on a boundary,
  goes to feature 1), feature 2 (r = 10). Seed 0 (the best) is wrong at (1, 1), near the
  boundary, and at (0.01, 10), far from it; seed 1 is right everywhere but diverged at (1, 10)."""
  right = [[BOTH, BOTH, BOTH], [FEATURE1, FEATURE1, FEATURE2]]
  seed0 = [[BOTH, BOTH, FEATURE2], [FEATURE1, BOTH, FEATURE2]]
  phase = np.stack([seed0, right], axis=-1)[None]  # [1, D, I, S]
  diverged = np.zeros_like(phase, bool)
  diverged[0, 1, 2, 1] = True
  eval_loss = np.where(diverged, np.nan, np.array([1.0, 2.0]))
  return make_result(densities=(0.01, 1.0), importances=(0.1, 1.0, 10.0), seeds=(0, 1),
                     phase=grid(phase), eval_loss=grid(eval_loss), diverged=grid(diverged))


def test_closed_form_agreement_best_seed():
  got = summary.closed_form_agreement(agreement_result(), "best", margin=0.1)
  assert (got["points"], got["points_far"], got["diverged"]) == (6, 5, 0)
  assert got["all"] == pytest.approx(4 / 6) and got["far_from_boundary"] == pytest.approx(4 / 5)


def test_closed_form_agreement_per_seed():
  """Seed 0: 4 of 6 agree (4 of its 5 far points); seed 1: its 5 healthy points agree."""
  got = summary.closed_form_agreement(agreement_result(), summary.PER_SEED)
  assert (got["points"], got["points_far"], got["diverged"]) == (11, 9, 1)
  assert got["all"] == pytest.approx(9 / 11) and got["far_from_boundary"] == pytest.approx(8 / 9)


def test_closed_form_margin():
  """With margin 20, only (0.01, r = 1) is far: there (second − best) / best ≈ 98, at the
  other points 9, 17 or 0 (the tie)."""
  got = summary.closed_form_agreement(agreement_result(), "best", margin=20.0)
  assert got["points_far"] == 1 and got["far_from_boundary"] == 1.0


def fractions_result():
  """relu and gelu at densities (0.01, 0.05, 0.2, 1), two seeds; seed 0 is the best
  except for gelu at 0.01."""
  relu = [[BOTH, BOTH], [BOTH, FEATURE1], [BOTH, FEATURE1], [FEATURE1, FEATURE1]]
  gelu = [[FEATURE1, BOTH], [BOTH, BOTH], [FEATURE2, BOTH], [FEATURE1, BOTH]]
  phase = np.asarray([relu, gelu])[:, :, None]  # [A, D, I, S]
  eval_loss = np.ones(phase.shape) + np.array([0.0, 1.0])
  eval_loss[1, 0, 0] = [2.0, 1.0]
  return make_result(activations=("relu", "gelu"), densities=(0.01, 0.05, 0.2, 1.0),
                     seeds=(0, 1), phase=grid(phase), eval_loss=grid(eval_loss))


def test_superposition_fraction_by_band():
  res = fractions_result()
  best = summary.superposition_fraction(res, (0.1, 0.3), "best")
  np.testing.assert_allclose(best, [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
  typical = summary.superposition_fraction(res, (0.1, 0.3), summary.PER_SEED)
  np.testing.assert_allclose(typical, [[3 / 4, 1 / 2, 0.0], [3 / 4, 1 / 2, 1 / 2]])
  assert summary.density_bands((0.1, 0.3)) == [
      "density < 0.1", "0.1 <= density < 0.3", "0.3 <= density"]


def test_phase_fractions_every_phase_and_empty_band():
  fractions = summary.phase_fractions(fractions_result(), (0.001,), "best")
  assert np.isnan(fractions[:, 0]).all()  # no density below 0.001
  np.testing.assert_allclose(fractions[1, 1], [0, 1 / 4, 1 / 2, 1 / 4, 0])  # gelu, best seeds
  np.testing.assert_allclose(fractions.sum(-1)[:, 1], [1.0, 1.0])


def test_embedded_features_best_seed():
  norms = np.zeros((1, 3, 1, 2, 3))  # [A, D, I, S, n]
  norms[0, 0, 0] = [[1.0, 0.6, 0.1], [1.0, 1.0, 1.0]]  # seed 0 best: 2 features
  norms[0, 1, 0] = [[1.0, 1.0, 1.0], [0.9, 0.4, 0.51]]  # seed 1 best: 2 features
  eval_loss = np.array([[[[1.0, 2.0]], [[2.0, 1.0]], [[np.nan, np.nan]]]])
  diverged = np.isnan(eval_loss)
  res = make_result(n=3, m=2, densities=(1.0, 0.1, 0.01), seeds=(0, 1),
                    importance_kind="geometric", importances=(0.7,), feature_norms=grid(norms),
                    feature_dimensionality=grid(norms / 2), eval_loss=grid(eval_loss),
                    diverged=grid(diverged))
  counts = summary.embedded_features(res, 0.5)
  assert counts.shape == (1, 3, 1, 1)
  np.testing.assert_array_equal(counts[0, :2, 0, 0], [2, 2])
  assert np.isnan(counts[0, 2, 0, 0])
  by_dim = summary.embedded_features(res, 0.3, "feature_dimensionality")  # D_i = norms / 2
  np.testing.assert_array_equal(by_dim[0, :2, 0, 0], [1, 1])


def test_dstar_ends_picks_densest_and_sparsest():
  """Densities out of order: the ends are found by value, not position."""
  densities = (0.1, 1.0, 0.01)
  scale = np.array([2.0, 1.0, 3.0])  # W = scale * ones: ‖W‖_F² = 6 scale² (m=2, n=3)
  W = np.ones((2, 3, 1, 1, 2, 3)) * scale[None, :, None, None, None, None]  # [A, D, I, S, m, n]
  dstar = np.array([[0.5, 1.0, 0.25], [0.4, 0.9, 0.2]])[:, :, None, None]
  res = make_result(n=3, m=2, activations=("relu", "tanh"), densities=densities,
                    importance_kind="uniform", W=grid(W),
                    dims_per_feature=grid(dstar))
  ends = summary.dstar_ends(res)
  np.testing.assert_array_equal(ends.densities, [1.0, 0.01])
  np.testing.assert_allclose(ends.dstar[:, :, 0, 0], [[1.0, 0.25], [0.9, 0.2]])
  np.testing.assert_allclose(ends.frobenius_sq[:, :, 0, 0], [[6.0, 54.0], [6.0, 54.0]])


def test_convergence_last_fifth_of_steps():
  """History ends at 50, ..., 300: 80 % of 300 is 240, the nearest end 250 (index 4)."""
  def history(start):  # falls to `start` at step 250, then to 1.0 at step 300
    return [9.0, 8.0, 7.0, 6.0, start, 1.0]
  loss = np.array([[history(1.3), history(1.0), history(0.9)],
                   [history(1.2), history(1.2), history(6.0)]])[:, None, None]  # [A, D, I, S, T]
  diverged = np.zeros(loss.shape[:-1], bool)
  diverged[1, 0, 0, 2] = True
  res = make_result(activations=("relu", "gelu"), seeds=(0, 1, 2),
                    loss_history=grid(loss), diverged=grid(diverged))
  conv = summary.convergence(res)
  assert conv.from_step == 250
  np.testing.assert_allclose(conv.change[0, 0, 0, 0], [0.3, 0.0, -0.1], atol=1e-12)
  np.testing.assert_allclose(conv.median, [0.1, 0.2], atol=1e-12)
  np.testing.assert_allclose(conv.max, [0.3, 0.2], atol=1e-12)  # the diverged 5.0 left out


def test_experiment_summary_is_json_and_labels_seed_rules():
  res = agreement_result()
  res.data["loss_history"] = np.ones(res["phase"].shape + (6,))
  out = summary.experiment_summary("phase_diagram", res)
  text = json.dumps(out, allow_nan=False)  # plain JSON types, NaN turned into null
  assert json.loads(text) == out
  assert (out["steps"], out["seeds"], out["n"]) == (300, 2, 2)
  assert set(out["closed_form_agreement"]) == {"best seed", "typical seed"}
  assert out["closed_form_agreement"]["best seed"]["all"] == pytest.approx(4 / 6, rel=1e-5)
  fractions = out["superposition_fraction"]
  assert fractions["bands"] == summary.density_bands()
  # Seed 0, the best, is in superposition at two of three points of density 0.01 and at
  # one of density 1; no density in [0.1, 0.3).
  assert fractions["best seed"]["relu"] == [pytest.approx(2 / 3, rel=1e-5), None,
                                            pytest.approx(1 / 3, rel=1e-5)]
  assert out["phase_fraction"]["all densities"]["relu"]["superposition"] == pytest.approx(0.5)
  basins = out["basins"]
  assert basins["seeds_per_point"] == 2
  # At density 0.01 the two seeds agree on superposition at r = 0.1, 1, and split at 10.
  key = "mean fraction of seeds in superposition, density < 0.1"
  assert basins[key]["relu"] == pytest.approx((1 + 1 + 0.5) / 3, rel=1e-5)
  assert out["convergence"]["median |relative loss change|"]["relu"] == 0.0
  with pytest.raises(ValueError, match="no summary"):
    summary.experiment_summary("nonsense", res)


def test_experiment_summary_other_experiments():
  """feature_matrices and dims_per_feature pick their own sections."""
  norms = np.array([[[[[1.0, 0.2, 0.9]]], [[[0.1, 0.1, 0.1]]]]])  # [A, D, I, S, n]
  common = dict(n=3, m=2, densities=(1.0, 0.1), loss_history=grid(np.ones((1, 2, 1, 1, 6))),
                feature_norms=grid(norms), feature_dimensionality=grid(norms),
                W=grid(np.ones((1, 2, 1, 1, 2, 3))),
                dims_per_feature=grid(np.full((1, 2, 1, 1), 1 / 3)))
  fm = summary.experiment_summary(
      "feature_matrices", make_result(importance_kind="geometric", importances=(0.7,), **common))
  assert fm["embedded_features"]["per_density"] == {"relu": [2.0, 0.0]}
  assert "closed_form_agreement" not in fm and "convergence" in fm
  dp = summary.experiment_summary("dims_per_feature",
                                  make_result(importance_kind="uniform", **common))
  ends = dp["dstar_ends"]
  assert ends["densities (densest, sparsest)"] == [1.0, 0.1]
  assert ends["frobenius_sq"] == {"relu": [6.0, 6.0]}
  assert ends["embedded features, D_i > 0.05"] == {"relu": [3.0, 3.0]}
  curves = dp["curves"]
  assert curves["densities"] == [0.1, 1.0]  # ascending
  assert curves["dims_per_feature"]["relu"] == pytest.approx([1 / 3, 1 / 3])
  # D_i = (1, 0.2, 0.9) at density 1, (0.1, 0.1, 0.1) at 0.1: none near 1/2.
  assert curves["fraction of features with |D_i - 1/2| < 0.02"] == {"relu": [0.0, 0.0]}


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_phase_diagram_script_writes_summary(tmp_path):
  """The quick phase diagram writes <figures>/phase_diagram_summary.json: the expected
  sections, fractions in [0, 1], the spec's steps and seeds."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "phase_diagram.py"), "--preset", "quick",
       "--quiet", "--out", str(tmp_path / "runs"), "--figures", str(tmp_path / "figs")],
      capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
  assert proc.returncode == 0, proc.stderr
  out = json.loads((tmp_path / "figs" / "phase_diagram_summary.json").read_text())
  assert (out["experiment"], out["steps"], out["seeds"]) == ("phase_diagram", 300, 2)
  assert {"closed_form_agreement", "superposition_fraction", "phase_fraction", "basins",
          "convergence"} <= set(out)
  activations = out["activations"]
  assert len(activations) == 7 and "relu" in activations
  for rule in ("best seed", "typical seed"):
    agreement = out["closed_form_agreement"][rule]
    assert 0 <= agreement["far_from_boundary"] <= 1 and 0 <= agreement["all"] <= 1
    assert agreement["points_far"] <= agreement["points"] == 36 * (1 if rule == "best seed" else 2)
    for act in activations:
      assert len(out["superposition_fraction"][rule][act]) == 3
      assert all(0 <= f <= 1 for f in out["superposition_fraction"][rule][act])
  for act in activations:
    assert sum(out["phase_fraction"]["all densities"][act].values()) == pytest.approx(1.0, abs=1e-4)
    assert out["basins"]["median loss gap (median seed - best seed) / best seed"][act] >= 0
    assert out["convergence"]["max |relative loss change|"][act] >= 0
  assert out["convergence"]["from_step"] == 250
