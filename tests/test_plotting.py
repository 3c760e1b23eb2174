"""Plotting: every figure draws from saved results in a process that never imports jax,
diverged models draw instead of crashing, the matrix figures share one panel grid, and the
ReLU closed form has the right phases."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from matplotlib import patches as mpatches
from matplotlib.backends.backend_agg import FigureCanvasAgg

from superpos_jax import phases, plotting, results, sweep
from superpos_jax.plotting import matrices

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SPEC_N2 = sweep.SweepSpec(n=2, m=1, activations=("linear", "relu"), densities=(1.0, 0.1),
                          importance_kind="relative", importances=(0.5, 2.0), seeds=(0, 1),
                          steps=20, log_every=10, eval_size=256, batch_size=64)
SPEC_N10 = sweep.SweepSpec(n=10, m=5, activations=("relu", "sigmoid", "solu"),
                           densities=(1.0, 0.01), importances=(0.7,), seeds=(0, 1),
                           steps=20, log_every=10, eval_size=256, batch_size=64)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """Two tiny trained results saved to .npz: (n=2 path, n=10 path)."""
  folder = tmp_path_factory.mktemp("results")
  return (results.save(sweep.run(SPEC_N2), folder / "n2"),
          results.save(sweep.run(SPEC_N10), folder / "n10"))


def _assert_png(path):
  assert os.path.getsize(path) > 1000, path
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE, path


def _draw_all(n2: results.SweepResult, n10: results.SweepResult, folder) -> list[str]:
  """Draws every figure once (phase figures from the n=2 result only)."""
  common = (plotting.figure_gram, plotting.figure_feature_norms, plotting.figure_neuron_features,
            plotting.figure_dims_per_feature, plotting.figure_feature_dimensionality,
            plotting.figure_loss_curves)
  paths = []
  for name, res in (("n2", n2), ("n10", n10)):
    for fn in common:
      paths += plotting.save_figure(fn(res), os.path.join(folder, f"{name}_{fn.__name__}"))
  for fn in (plotting.figure_phase_diagram, plotting.figure_phase_continuous):
    paths += plotting.save_figure(fn(n2), os.path.join(folder, f"n2_{fn.__name__}"))
  return paths


def test_every_figure_draws_without_jax(saved, tmp_path):
  """A fresh process imports every plotting module, loads the .npz files and draws every
  figure with jax never imported."""
  script = textwrap.dedent("""
      import importlib, os, pkgutil, sys
      import numpy as np
      from superpos_jax import plotting, results
      modules = [m.name for m in pkgutil.iter_modules(plotting.__path__, "superpos_jax.plotting.")]
      for name in modules:
        importlib.import_module(name)
      assert len(modules) >= 5, modules
      n2, n10, out = results.load(sys.argv[1]), results.load(sys.argv[2]), sys.argv[3]
      paths = []
      figures = (plotting.figure_gram, plotting.figure_feature_norms,
                 plotting.figure_neuron_features, plotting.figure_dims_per_feature,
                 plotting.figure_feature_dimensionality, plotting.figure_loss_curves)
      for name, res in (("n2", n2), ("n10", n10)):
        for fn in figures:
          paths += plotting.save_figure(fn(res), os.path.join(out, name + "_" + fn.__name__))
      for fn in (plotting.figure_phase_diagram, plotting.figure_phase_continuous):
        paths += plotting.save_figure(fn(n2, seed_rule="trimmed_mean"),
                                      os.path.join(out, "n2_" + fn.__name__))
      rng = np.random.default_rng(0)
      batches = {f"S={s}": np.where(rng.uniform(size=(20, 100)) < 1 - s,
                                    rng.uniform(size=(20, 100)), 0.0) for s in (0.5, 0.99)}
      paths += plotting.save_figure(plotting.figure_input_batches(batches),
                                    os.path.join(out, "input_batches"))
      jax_modules = sorted(m for m in sys.modules if m == "jax" or m.startswith("jax."))
      assert not jax_modules, jax_modules
      print("\\n".join(paths))
      """)
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-c", script, *saved, str(tmp_path)], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  paths = proc.stdout.split()
  assert len(paths) == 2 * 6 + 2 + 1
  for path in paths:
    _assert_png(path)
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_trimmed_mean_figures_never_show_averaged_weights(saved):
  """Under trimmed_mean the metric figures draw the means, and the weight figures the best
  seed's W, saying so (a trimmed_mean reduction holds no W: `results.PARAMETERS`)."""
  n10 = results.load(saved[1])
  for fn in (plotting.figure_gram, plotting.figure_neuron_features):
    title = fn(n10, seed_rule="trimmed_mean")._suptitle.get_text()
    assert "weights: best seed" in title, title
    assert "weights: best seed" not in fn(n10)._suptitle.get_text()
  norms = plotting.figure_feature_norms(n10, seed_rule="trimmed_mean")
  assert "weights are never averaged" in norms._suptitle.get_text()
  for fn in (plotting.figure_dims_per_feature, plotting.figure_feature_dimensionality,
             plotting.figure_loss_curves):
    fn(n10, seed_rule="trimmed_mean")


def _with_diverged(res: results.SweepResult, all_seeds: bool) -> results.SweepResult:
  """A copy where activation 0 at density index 1 blew up (NaN weights, metrics, loss)."""
  data = {k: v.copy() for k, v in res.data.items()}
  where = (0, 1) + (slice(None),) * 4 + (slice(None) if all_seeds else 0,)
  data["diverged"][where] = True
  for k in ("W", "b", "feature_norms", "superposition", "feature_dimensionality",
            "dims_per_feature", "eval_loss", "final_loss"):
    data[k][where] = np.nan
  data["loss_history"][where + (slice(1, None),)] = np.nan
  return dataclasses.replace(res, data=data)


def _hatched(fig) -> int:
  return sum(isinstance(p, mpatches.Rectangle) and bool(p.get_hatch())
             for ax in fig.axes for p in ax.patches)


def test_diverged_points_still_draw(saved, tmp_path):
  """NaN weights never crash a figure; a point diverged in every seed is drawn hatched."""
  n2 = _with_diverged(results.load(saved[0]), all_seeds=True)
  n10 = _with_diverged(results.load(saved[1]), all_seeds=True)
  for path in _draw_all(n2, n10, str(tmp_path)):
    _assert_png(path)
  # Two importances share the diverged (activation, density): two hatched cells.
  assert _hatched(plotting.figure_phase_diagram(n2)) == 2


def test_one_diverged_seed_is_skipped(saved, tmp_path):
  """With a healthy seed left, the best-seed figures show it; the loss curves still draw."""
  n2 = _with_diverged(results.load(saved[0]), all_seeds=False)
  assert _hatched(plotting.figure_phase_diagram(n2)) == 0
  for fn in (plotting.figure_gram, plotting.figure_loss_curves):
    _assert_png(plotting.save_figure(fn(n2), tmp_path / fn.__name__)[0])


def test_phase_figures_need_n2(saved):
  n10 = results.load(saved[1])
  for fn in (plotting.figure_phase_diagram, plotting.figure_phase_continuous):
    with pytest.raises(ValueError, match="n=2"):
      fn(n10)


def test_figures_state_their_settings(saved):
  """The title block names n, m, steps and the seed rule, so a PNG explains itself."""
  res = results.load(saved[1])
  title = plotting.figure_gram(res)._suptitle.get_text()
  for text in ("n=10, m=5", "20 steps", "best of 2 seeds"):
    assert text in title, title
  cols = [ax.get_title() for ax in plotting.figure_gram(res).axes if ax.get_title()]
  assert cols[:2] == ["1-S = 1", "b"] and "1-S = 0.01" in cols


def test_matrix_figures_share_one_panel_grid(saved, monkeypatch):
  """Gram, norms and neurons fill their activation x density grid through one helper, so
  their panels carry the same density titles and activation labels in the same places."""
  res = results.load(saved[1])
  real, grids = matrices.activation_density_panels, []

  def spy(grid, red, draw, **kwargs):
    grids.append((len(grid), len(grid[0])))
    return real(grid, red, draw, **kwargs)

  monkeypatch.setattr(matrices, "activation_density_panels", spy)
  acts, dens = list(SPEC_N10.activations), ["1", "0.01"]
  layouts = []
  for fn in (plotting.figure_gram, plotting.figure_feature_norms, plotting.figure_neuron_features):
    panels = [ax for ax in fn(res).axes if ax.get_label() != "<colorbar>"]
    layouts.append(([ax.get_title() for ax in panels if ax.get_title().startswith("1-S")],
                    [ax.get_ylabel().split("\n")[0] for ax in panels if ax.get_ylabel()]))
  assert grids == [(len(acts), len(dens))] * 3
  assert layouts == [([f"1-S = {d}" for d in dens], acts)] * 3


def test_phase_indices_match_results():
  assert results.PHASES is phases.PHASES is plotting.PHASES
  assert phases.PHASES[plotting.FEATURE1] == "feature 1 only"
  assert phases.PHASES[plotting.BOTH] == "superposition"
  assert phases.PHASES[plotting.FEATURE2] == "feature 2 only"


def test_relu_closed_form_inside_points():
  phase = plotting.relu_closed_form_phase
  assert phase(1.0, 0.1) == plotting.FEATURE1  # dense, feature 2 unimportant: drop it
  assert phase(1.0, 10.0) == plotting.FEATURE2  # dense, feature 2 dominant: drop feature 1
  assert phase(0.01, 1.0) == plotting.BOTH  # sparse: antipodal superposition
  assert phase(0.01, 0.1) == plotting.BOTH and phase(0.01, 10.0) == plotting.BOTH
  got = phase(np.array([1.0, 0.01])[:, None], np.array([0.1, 1.0, 10.0])[None, :])
  assert got.shape == (2, 3) and got.dtype.kind == "i"


def test_relu_closed_form_boundary():
  """Antipodal beats the best single feature iff (1+r)s²/6 < min(1, r)(s/3 - s²/4), i.e.
  s < 4r/(2+5r) for r <= 1 and s < 4/(2r+5) for r >= 1; both give s* = 4/7 at r = 1."""
  s_star = 4 / 7
  losses = plotting.relu_closed_form_losses(s_star, 1.0)
  np.testing.assert_allclose(losses, s_star / 3 - s_star**2 / 4, rtol=1e-12)  # three-way tie
  eps = 1e-6
  assert plotting.relu_closed_form_phase(s_star - eps, 1.0) == plotting.BOTH
  assert plotting.relu_closed_form_phase(s_star + eps, 1.0) != plotting.BOTH
  for r in (0.1, 0.3, 0.7, 1.5, 3.0, 10.0):
    edge = 4 * r / (2 + 5 * r) if r <= 1 else 4 / (2 * r + 5)
    single = plotting.FEATURE1 if r < 1 else plotting.FEATURE2
    assert plotting.relu_closed_form_phase(edge * (1 - 1e-6), r) == plotting.BOTH, r
    assert plotting.relu_closed_form_phase(edge * (1 + 1e-6), r) == single, r
  # Orientation: dropping feature 2 costs r times one feature's loss (first column).
  s = 0.5
  np.testing.assert_allclose(plotting.relu_closed_form_losses(s, 2.0),
                             [2 * (s / 3 - s**2 / 4), 3 * s**2 / 6, s / 3 - s**2 / 4])


def test_phase_continuous_colors_corners():
  """The documented corners: feature 1 only white, superposition red."""
  colors = plotting.phase_continuous_colors
  np.testing.assert_allclose(colors(np.array([1.0, 0.0]), np.array([0.0, 0.0])), [1, 1, 1])
  np.testing.assert_allclose(colors(np.array([1.0, 1.0]), np.array([1.0, 1.0])), [1, 0, 0],
                             atol=1e-12)
  assert np.all(np.isfinite(colors(np.full((3, 2), np.nan), np.full((3, 2), np.nan))))


def test_activation_colors_stable_across_subsets():
  full = plotting.activation_colors(["linear", "relu", "gelu", "silu", "sigmoid", "tanh", "solu"])
  sub = plotting.activation_colors(["tanh", "relu"])
  assert sub["tanh"] == full["tanh"] and sub["relu"] == full["relu"]
  assert len(set(full.values())) == len(full)
  custom = plotting.activation_colors(["relu", "my_act", "other_act"])
  assert len(set(custom.values())) == 3


def test_save_figure_formats_and_atomicity(tmp_path):
  fig = plotting.figure_input_batches({"a": np.zeros((3, 4)), "b": np.ones((3, 4))})
  paths = plotting.save_figure(fig, tmp_path / "sub" / "fig.png", formats=("png", "svg"))
  assert paths == [str(tmp_path / "sub" / "fig.png"), str(tmp_path / "sub" / "fig.svg")]
  _assert_png(paths[0])
  assert os.path.getsize(paths[1]) > 0
  assert sorted(os.listdir(tmp_path / "sub")) == ["fig.png", "fig.svg"]


def test_long_activation_names_wrap_at_underscores():
  """Row labels of long registry names break after underscores; short names stay whole."""
  from superpos_jax.plotting.panels import short_lines
  assert short_lines("gelu_tanh") == "gelu_tanh"
  assert short_lines("sigmoid_stretched_0p01") == "sigmoid_\nstretched_\n0p01"
  assert short_lines("sigmoid_stretched_0p01").replace("\n", "") == "sigmoid_stretched_0p01"


def test_one_row_matrix_figures_keep_every_label_inside():
  """A grid of one activation makes a short figure: its colorbar labels and titles still
  lie inside the canvas (a one-row WᵀW figure once clipped its colorbar label)."""
  res = sweep.run(dataclasses.replace(SPEC_N10, activations=("sigmoid",), seeds=(0,)),
                  progress=False)
  for fn in (plotting.figure_gram, plotting.figure_feature_norms):
    fig = fn(res)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = canvas.get_width_height()
    texts = [t for ax in fig.axes for t in (ax.yaxis.label, ax.xaxis.label, ax.title)
             if t.get_text()]
    assert any("clipped" in t.get_text() for t in texts), fn.__name__
    for t in texts:
      box = t.get_window_extent(renderer)
      assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, (
          fn.__name__, t.get_text(), box, (width, height))
