"""The SAE stage: one SAE recovers known directions, one SAE alone equals the same SAE
inside the grid, the metrics on hand-made dictionaries, files, and the quick preset."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superpos_jax import cache, results, sweep
from superpos_jax.sae import grid as sae_sweep
from superpos_jax.sae import results as sae_results
from superpos_jax.sae import summary as summary_sae
from superpos_jax.sae import train as sae
from superpos_jax.sae.spec import SAEGrid, SAESpec
from superpos_jax.spec import SpecError, SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sae_recovers_known_antipodal_directions():
  """8 features on ±e_1..±e_4 in 4 dimensions, sparse (density 0.05): examples almost
  always hold one feature, so a ReLU SAE of 8 latents must find all 8 signed
  directions, fire ~0.4 latents per example (8 × 0.05) and leave none dead."""
  W = jnp.concatenate([jnp.eye(4), -jnp.eye(4)], axis=1)  # [m=4, n=8]
  spec = SAESpec(steps=1500, batch_size=256, lr=3e-3, eval_size=8192)
  trainer = sae.make_train(spec, n=8, m=4, k=8)
  out = jax.jit(trainer.train)(sae.init_key(0, 8), sae.data_key(0, 0.05), W, 0.05, 0.1)
  np.testing.assert_array_less(0.99, np.asarray(out.metrics.max_cosine))
  assert np.all(np.asarray(out.metrics.frequency) > 0)
  assert 0.3 < float(out.metrics.l0) < 0.5
  assert float(out.metrics.reconstruction_error) < 0.1
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out.params.W_d), axis=0), 1.0, atol=1e-5)


def test_step_keeps_unit_columns_and_removes_the_parallel_gradient():
  key = jax.random.key(3)
  W_d = sae.unit_columns(jax.random.normal(key, (5, 7)))
  g = jax.random.normal(jax.random.key(4), (5, 7))
  np.testing.assert_allclose(np.sum(np.asarray(W_d * sae.remove_parallel(W_d, g)), axis=0), 0.0,
                             atol=1e-6)
  trainer = sae.make_train(SAESpec(), n=6, m=5, k=7)
  h = jax.random.uniform(jax.random.key(5), (5, 64))
  state, _ = jax.jit(trainer.step)(trainer.init(key), h, 0.1)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(state.params.W_d), axis=0), 1.0, atol=1e-6)


def test_max_cosine_of_hand_made_dictionaries():
  W = np.array([[2.0, 0.0, 0.0, 0.0],
                [0.0, 0.5, 0.0, 0.0],
                [0.0, 0.0, 3.0, 0.0]], np.float32)  # [m=3, n=4]; feature 3 not embedded
  s = 1 / np.sqrt(2)
  D = np.array([[1.0, 0.0, 0.0, 0.0],
                [0.0, s, 0.0, 0.0],
                [0.0, s, -1.0, 0.0]], np.float32)  # any column norms: cosines only
  alive = np.array([True, True, True, False])
  got = np.asarray(sae.max_cosine(jnp.asarray(W), jnp.asarray(D * 3.0), jnp.asarray(alive)))
  # feature 0 exact; 1 and 2 at 45 degrees of latent 1 (latent 2 is -e_2: cosine -1 for
  # feature 2); feature 3 is a zero column: cosine 0.
  np.testing.assert_allclose(got, [1.0, s, s, 0.0], atol=1e-6)
  dead = np.asarray(sae.max_cosine(jnp.asarray(W), jnp.asarray(D), jnp.zeros(4, bool)))
  np.testing.assert_array_equal(dead, sae.NO_LATENT)


def test_recovery_statistics_of_hand_made_values():
  max_cos = np.array([[0.95, 0.5, 0.99, 0.97],
                      [0.2, 0.1, 0.3, 0.99]])
  emb = np.array([True, True, True, False])  # the 0.97 / 0.99 of feature 3 must not count
  freq = np.array([[0.0, 0.3, 0.9, np.nan], [0.0, 0.0, 0.1, 0.2]])  # NaN: beyond k
  out = summary_sae.per_sae(max_cos, emb, freq)
  np.testing.assert_array_equal(out["recovered"], [2, 0])
  np.testing.assert_allclose(out["fraction recovered"], [2 / 3, 0.0])
  np.testing.assert_allclose(out["mmcs"], [(0.95 + 0.5 + 0.99) / 3, 0.2])
  np.testing.assert_allclose(out["dead latents"], [1 / 3, 0.5])
  np.testing.assert_allclose(out["dense latents"], [1 / 3, 0.0])
  none = summary_sae.per_sae(max_cos, np.zeros(4, bool), freq)
  assert np.all(np.isnan(none["fraction recovered"]))
  # Embedded and superposed on a hand-built W: an antipodal pair, an orthogonal feature,
  # and a short column.
  W = np.array([[1.0, -1.0, 0.0, 0.1], [0.0, 0.0, 1.0, 0.0]])
  np.testing.assert_array_equal(summary_sae.embedded(W), [True, True, True, False])
  np.testing.assert_array_equal(summary_sae.superposed(W), [True, True, False, False])


@pytest.fixture(scope="module")
def toy():
  spec = SweepSpec(n=6, m=3, activations=("relu", "gelu"), densities=(0.3, 0.05),
                   seeds=(0, 1), steps=60, log_every=20, batch_size=128, eval_size=256)
  return sweep.run(spec, progress=False)


SMALL = SAESpec(dict_multiples=(1, 2), l1s=(0.1, 0.3), sae_seeds=(0, 1), steps=60, log_every=20,
                batch_size=64, lr=3e-3, eval_size=512)


def test_one_sae_alone_equals_the_same_sae_inside_the_grid(toy):
  grid = sae_sweep.run(toy, SMALL, progress=False)
  assert grid.axes == (*toy.axes, "dict_multiple", "l1", "sae_seed")
  assert grid["decoder"].shape == toy["W"].shape[:-2] + (2, 2, 2, 3, 12)
  assert np.all(np.isnan(grid["decoder"][..., 0, :, :, :, 6:]))  # x1 dictionaries: 6 latents
  for act, dens, seed, mult, l1, sae_seed in (("gelu", 0.05, 1, 2, 0.3, 1), ("relu", 0.3, 0, 1, 0.1, 0)):
    k = mult * 6
    W = toy.sel(activation=act, density=dens, seed=seed)["W"].reshape(3, 6)
    trainer = sae.make_train(SMALL, n=6, m=3, k=k)
    alone = jax.jit(trainer.train)(sae.init_key(sae_seed, k), sae.data_key(seed, dens),
                                   jnp.asarray(W), dens, l1)
    point = grid.sel(activation=act, density=dens, seed=seed, dict_multiple=mult, l1=l1,
                     sae_seed=sae_seed)
    np.testing.assert_allclose(point["decoder"].reshape(3, 12)[:, :k], alone.params.W_d,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(point["loss_history"].ravel(), alone.loss_history, rtol=1e-4)
    np.testing.assert_allclose(point["max_cosine"].ravel(), alone.metrics.max_cosine, atol=1e-5)
    np.testing.assert_allclose(point["frequency"].ravel()[:k], alone.metrics.frequency)
    np.testing.assert_allclose(point["coactivation"].reshape(12, 6)[:k], alone.metrics.coactivation)
    assert np.all(np.isnan(point["coactivation"].reshape(12, 6)[k:]))  # beyond this SAE's k
    np.testing.assert_allclose(point["mse"], alone.metrics.mse, rtol=1e-4)
  one_to_one = summary_sae.sae_values(grid)
  for name in ("mcc", "uniqueness", "precision", "recall", "f1"):
    assert np.all((one_to_one[name] >= 0) & (one_to_one[name] <= 1 + 1e-9)), name
  assert np.all(one_to_one["explained variance"] <= 1)
  # The chunking does not change the numbers beyond float rounding.
  other = sae_sweep.run(toy, SMALL, progress=False, chunk_size=3)
  assert other.meta["engine"]["chunk_size"] == 3 != grid.meta["engine"]["chunk_size"]
  np.testing.assert_allclose(other["decoder"], grid["decoder"], rtol=1e-4, atol=1e-5)


def test_sae_result_files_round_trip_and_are_told_apart(toy, tmp_path):
  spec = SAESpec(dict_multiples=(1,), l1s=(0.1,), sae_seeds=(0,), steps=20, log_every=10,
                 batch_size=32, eval_size=128)
  res = sae_sweep.run(toy, spec, progress=False)
  path = sae_results.save(res, tmp_path / "sae")
  back = sae_results.load(path)
  assert back.axes == res.axes and back.sae_spec == spec and back.toy_spec == toy.spec
  for k in res.data:
    np.testing.assert_array_equal(back[k], res[k])
  np.testing.assert_array_equal(back.toy["toy_W"], toy["W"])
  with pytest.raises(results.ResultFileError, match="not an SAE result"):
    sae_results.load(results.save(toy, tmp_path / "toy"))
  assert cache.load(path, SAEGrid.of(toy, spec), read=sae_results.load)[0] is not None
  stale, why = cache.load(path, SAEGrid.of(toy, SAESpec(steps=21, log_every=7)),
                          read=sae_results.load)
  assert stale is None and "another spec" in why
  # The SAE figures draw from the file in a process that never imports jax.
  script = textwrap.dedent("""
      import sys
      from superpos_jax.sae import results as sae_results
      from superpos_jax.plotting import sae as plot_sae, save_figure
      res = sae_results.load(sys.argv[1])
      figs = [plot_sae.figure_sae_recovery([res], 1, 0.1),
              plot_sae.figure_sae_by_superposition([res], 1, 0.1),
              plot_sae.figure_sae_dictionaries(res, [("gelu", 0.05)], 1, 0.1)]
      for i, fig in enumerate(figs):
        save_figure(fig, f"{sys.argv[2]}/fig{i}")
      assert not [m for m in sys.modules if m == "jax" or m.startswith("jax.")]
      """)
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-c", script, path, str(tmp_path)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  for i in range(3):
    assert (tmp_path / f"fig{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sae_spec_rejects_bad_fields_and_non_bottleneck_models():
  with pytest.raises(SpecError, match="dict multiple"):
    SAESpec(dict_multiples=(0,))
  with pytest.raises(SpecError, match="distinct"):
    SAESpec(l1s=(0.1, 0.1))
  with pytest.raises(SpecError, match="steps"):
    SAESpec(steps=0)
  res = results.SweepResult(coords={}, data={}, extra={},
                            meta={"spec": SweepSpec(n=4, m=2, model="privileged").to_dict()})
  with pytest.raises(SpecError, match="bottleneck"):
    sae_sweep.toy_models(res)


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_sae_recovery_quick(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "sae_recovery.py"), "--preset", "quick",
       "--quiet", "--activations", "relu,gelu", "--densities", "0.3,0.03", "--steps", "100",
       "--sae-steps", "50", "--explore", "--out", str(tmp_path / "runs"), "--figures",
       str(tmp_path / "figs")],
      capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
  assert proc.returncode == 0, proc.stderr
  saes = sorted(glob.glob(str(tmp_path / "runs" / "sae_recovery-*-sae-cpu-*.npz")))
  assert len(saes) == 2
  for path in saes:
    res = sae_results.load(path)
    assert list(res.coords["activation"]) == ["relu", "gelu"] and not res["diverged"].any()
    assert res.sae_spec.steps == 50 and len(res.coords["sae_seed"]) == 2
  with open(tmp_path / "figs" / "sae_recovery_summary.json") as f:
    out = json.load(f)
  assert out["headline setting"] == "dict x1, l1 0.1"
  for study, n in (("n10", 10), ("n40", 40)):
    s = out[study]
    assert s["toy"]["n"] == n and s["toy"]["activations"] == ["relu", "gelu"]
    for rule in ("best seed", "typical seed"):
      frac = np.array(s["fraction recovered"][rule]["dict x1, l1 0.1"]["gelu"], float)
      assert frac.shape == (2,) and np.all((frac >= 0) & (frac <= 1))
      l0 = np.array(s["l0"][rule]["dict x1, l1 0.1"]["relu"], float)
      assert np.all(l0 >= 0)
      mcc = np.array(s["mcc"][rule]["dict x1, l1 0.1"]["relu"], float)
      assert mcc.shape == (2,) and np.all((mcc >= 0) & (mcc <= 1))
    emb = np.array(s["embedded features"]["best seed"]["relu"])
    assert np.all((emb >= 0) & (emb <= n))
    assert len(s["max cosine per feature"]["relu"][0]) == n
  for suffix in ("recovery", "by_superposition", "one_to_one", "dictionaries_n10",
                 "dictionaries_n40"):
    png = tmp_path / "figs" / f"sae_recovery_{suffix}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
  # --explore: the toy models' page and each SAE stage's (the generic view, MMCS)
  pages = sorted(p.name for p in (tmp_path / "figs").glob("*_explorer.html"))
  assert pages == ["sae_recovery-n10-sae_explorer.html", "sae_recovery-n40-sae_explorer.html",
                   "sae_recovery_explorer.html"]
  assert '"metric":"mmcs"' in (tmp_path / "figs" / pages[0]).read_text()
