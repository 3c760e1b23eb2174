"""Result files (atomic save, validated load) and selection / seed reduction, on
hand-built results whose answers are known."""

import json
import os

import numpy as np
import pytest

from superpos_jax import results
from superpos_jax.spec import SweepSpec

SPEC = SweepSpec(n=2, m=1, activations=("relu", "tanh"), densities=(1.0, 0.1),
                       importance_kind="relative", importances=(0.5,), lrs=(1e-3,), seeds=(0, 1, 2),
                       steps=25, batch_size=64, eval_size=256, log_every=10)
# Hand-made results keep only the study's five axes (as a file written before the weight
# decay and init scale axes): `axes` lists the axes present.
GRID = SPEC.grid_shape[:4] + SPEC.grid_shape[6:]  # (2, 2, 1, 1, 3)


def _result():
  """A SweepResult filled with distinct numbers, laid out as sweep.run lays it out."""
  rng = np.random.default_rng(0)
  n, m, T = 2, 1, 3
  data = {
      "W": rng.normal(size=GRID + (m, n)).astype(np.float32),
      "b": rng.normal(size=GRID + (n,)).astype(np.float32),
      "loss_history": rng.uniform(size=GRID + (T,)).astype(np.float32),
      "final_loss": rng.uniform(size=GRID).astype(np.float32),
      "eval_loss": rng.uniform(size=GRID).astype(np.float32),
      "diverged": np.zeros(GRID, bool),
      "feature_norms": rng.uniform(size=GRID + (n,)).astype(np.float32),
      "superposition": rng.uniform(size=GRID + (n,)).astype(np.float32),
      "feature_dimensionality": rng.uniform(size=GRID + (n,)).astype(np.float32),
      "dims_per_feature": rng.uniform(size=GRID).astype(np.float32),
      "phase": rng.integers(0, 5, size=GRID).astype(np.int32),
  }
  coords = {a: v for a, v in SPEC.coords().items() if a not in ("weight_decay", "init_scale")}
  extra = {"importance_vectors": SPEC.importance_matrix(), "history_steps": SPEC.history_steps()}
  meta = {"spec": SPEC.to_dict(), "env": {"jax": "x.y.z", "backend": "cpu"},
          "timings": {"compile_s": 1.5, "run_s": 0.25}}
  return results.SweepResult(coords=coords, data=data, extra=extra, meta=meta)


# ---------------------------------------------------------------------------- save / load

def test_round_trip(tmp_path):
  """save then load gives equal arrays, coords, extras, and the spec back."""
  res = _result()
  path = results.save(res, tmp_path / "r")  # ".npz" is appended
  assert path == str(tmp_path / "r.npz")
  loaded = results.load(path)
  assert set(loaded.data) == set(res.data)
  for k, v in res.data.items():
    np.testing.assert_array_equal(loaded.data[k], v, err_msg=k)
    assert loaded.data[k].dtype == v.dtype, k
  for k, v in res.coords.items():
    np.testing.assert_array_equal(loaded.coords[k], v, err_msg=k)
  for k, v in res.extra.items():
    np.testing.assert_array_equal(loaded.extra[k], v, err_msg=k)
  assert loaded.axes == tuple(a for a in results.AXES if a in res.coords)
  assert loaded.meta["schema_version"] == results.SCHEMA_VERSION
  assert loaded.meta["env"] == res.meta["env"] and loaded.meta["timings"] == res.meta["timings"]
  assert SweepSpec.from_dict(loaded.meta["spec"]) == SPEC
  assert "2 activation x 2 density" in results.summary(loaded)


def test_save_leaves_no_temp_files(tmp_path):
  """A successful save leaves exactly the result file in the folder (no temp files)."""
  results.save(_result(), tmp_path / "r.npz")
  results.save(_result(), tmp_path / "r.npz")  # overwrite
  assert os.listdir(tmp_path) == ["r.npz"]


def _interrupting_savez(f, **arrays):
  f.write(b"PK\x03\x04 half a zip")
  raise KeyboardInterrupt


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
  """Ctrl-C mid-write: no file under the final name and no stray temp file."""
  monkeypatch.setattr(np, "savez_compressed", _interrupting_savez)
  with pytest.raises(KeyboardInterrupt):
    results.save(_result(), tmp_path / "r.npz")
  assert os.listdir(tmp_path) == []


def test_interrupted_overwrite_keeps_old_file(tmp_path, monkeypatch):
  """Ctrl-C while overwriting leaves the previous result intact and loadable."""
  path = results.save(_result(), tmp_path / "r.npz")
  monkeypatch.setattr(np, "savez_compressed", _interrupting_savez)
  with pytest.raises(KeyboardInterrupt):
    results.save(_result(), path)
  monkeypatch.undo()
  assert os.listdir(tmp_path) == ["r.npz"]
  np.testing.assert_array_equal(results.load(path)["W"], _result()["W"])


def _rewrite(src, dst, drop=(), meta=None):
  """Copies an npz, dropping entries and/or replacing the meta string."""
  with np.load(src) as z:
    arrays = {k: z[k] for k in z.files if k not in drop}
  if meta is not None:
    arrays["meta"] = np.asarray(meta)
  np.savez(dst, **arrays)
  return dst


@pytest.fixture
def good_file(tmp_path):
  return results.save(_result(), tmp_path / "good.npz")


def test_load_rejects_missing_path(tmp_path):
  """A path that does not exist."""
  with pytest.raises(results.ResultFileError, match="no such file"):
    results.load(tmp_path / "nope.npz")


def test_load_rejects_random_bytes(tmp_path):
  """A file that is not an npz at all."""
  path = tmp_path / "junk.npz"
  path.write_bytes(np.random.default_rng(0).bytes(1000))
  with pytest.raises(results.ResultFileError, match="not a readable"):
    results.load(path)


def test_load_rejects_truncated_file(tmp_path, good_file):
  """The first half of a valid result file."""
  blob = open(good_file, "rb").read()
  path = tmp_path / "cut.npz"
  path.write_bytes(blob[: len(blob) // 2])
  with pytest.raises(results.ResultFileError):
    results.load(path)


def test_load_rejects_npz_without_meta(tmp_path, good_file):
  """An npz from elsewhere (no meta entry)."""
  path = _rewrite(good_file, tmp_path / "nometa.npz", drop=("meta",))
  with pytest.raises(results.ResultFileError, match="meta"):
    results.load(path)


def test_load_rejects_corrupt_meta(tmp_path, good_file):
  """A meta entry that is not JSON."""
  path = _rewrite(good_file, tmp_path / "badmeta.npz", meta="{not json")
  with pytest.raises(results.ResultFileError, match="metadata"):
    results.load(path)


def test_load_rejects_other_schema_version(tmp_path, good_file):
  """A file of an unknown schema version; the message names the version."""
  with np.load(good_file) as z:
    meta = json.loads(str(z["meta"]))
  meta["schema_version"] = 999
  path = _rewrite(good_file, tmp_path / "v999.npz", meta=json.dumps(meta))
  with pytest.raises(results.ResultFileError, match="999"):
    results.load(path)


@pytest.mark.parametrize("entry", ["W", "eval_loss", "history_steps", "coord_density"])
def test_load_rejects_missing_arrays(tmp_path, good_file, entry):
  """A file missing a required array; the message names it."""
  path = _rewrite(good_file, tmp_path / "missing.npz", drop=(entry,))
  with pytest.raises(results.ResultFileError, match=entry):
    results.load(path)


def test_load_rejects_wrong_grid_shape(tmp_path, good_file):
  """An array whose leading shape is not the grid shape."""
  with np.load(good_file) as z:
    arrays = {k: z[k] for k in z.files}
  arrays["b"] = arrays["b"][:, :1]
  np.savez(tmp_path / "shape.npz", **arrays)
  with pytest.raises(results.ResultFileError, match="b has shape"):
    results.load(tmp_path / "shape.npz")


def test_load_without_phase(tmp_path, good_file):
  """phase is optional (only n = 2 sweeps have it)."""
  path = _rewrite(good_file, tmp_path / "nophase.npz", drop=("phase",))
  assert "phase" not in results.load(path).data


# ---------------------------------------------------------------------------- selection

def test_sel_by_values():
  """sel picks by coordinate value (names for activations) and drops the selected axes."""
  res = _result()
  sub = res.sel(activation="tanh", density=0.1)
  assert sub.axes == ("importance", "lr", "seed")
  assert sub["W"].shape == (1, 1, 3, 1, 2)
  np.testing.assert_array_equal(sub["W"], res["W"][1, 1])
  # float coordinates match to relative 1e-6 (a float32 0.1 finds the float64 0.1)
  np.testing.assert_array_equal(res.sel(density=np.float32(0.1))["eval_loss"],
                                res["eval_loss"][:, 1])
  point = res.sel(activation="relu", density=1.0, importance=0.5, lr=1e-3, seed=2)
  assert point.axes == ()
  assert point["eval_loss"] == res["eval_loss"][0, 0, 0, 0, 2]
  assert res.index("seed", 1) == 1


def test_sel_missing_value_lists_values():
  """A value not on the axis raises KeyError naming the axis, the value and what exists."""
  res = _result()
  with pytest.raises(KeyError, match=r"density=0\.3.*values: \[1\.0, 0\.1\]"):
    res.sel(density=0.3)
  with pytest.raises(KeyError, match="gelu"):
    res.sel(activation="gelu")
  with pytest.raises(KeyError, match="unknown axes"):
    res.sel(sparsity=0.1)


def _seed_result():
  """Known eval losses over 3 seeds: best and worst seed differ between points."""
  res = _result()
  loss = np.empty(GRID, np.float32)
  loss[0, 0, 0, 0] = [0.3, 0.1, 0.5]        # best 1, worst 2
  loss[0, 1, 0, 0] = [0.2, 0.9, 0.4]        # best 0, worst 1
  loss[1, 0, 0, 0] = [np.nan, 0.7, 0.6]     # diverged seed 0 counts as worst; best 2
  loss[1, 1, 0, 0] = [0.8, 0.85, 0.05]      # best 2, worst 1
  res.data["eval_loss"] = loss
  res.data["phase"][...] = 0
  res.data["phase"][0, 0, 0, 0] = [3, 3, 1]  # kept seeds 1, 0 agree on 3
  return res


BEST = np.array([[1, 0], [2, 2]])  # [activation, density] -> best seed
KEPT = [[(1, 0), (0, 2)], [(2, 1), (2, 0)]]  # the two lowest-loss seeds, any order


def test_reduce_seeds_best():
  """"best" keeps, at every point, the arrays of the lowest-eval-loss seed (NaN = worst)."""
  res = _seed_result()
  red = res.reduce_seeds("best")
  assert red.axes == ("activation", "density", "importance", "lr")
  for a in range(2):
    for d in range(2):
      s = BEST[a, d]
      for k in res.data:
        np.testing.assert_array_equal(red[k][a, d, 0, 0], res[k][a, d, 0, 0, s], err_msg=k)


def test_reduce_seeds_trimmed_mean():
  """"trimmed_mean" averages metrics over all seeds but the worst and holds no weights
  (one seed's W would not be the W whose norms it averages)."""
  res = _seed_result()
  red = res.reduce_seeds("trimmed_mean")
  np.testing.assert_allclose(red["eval_loss"][:, :, 0, 0], [[0.2, 0.3], [0.65, 0.425]],
                             rtol=1e-6, atol=0)
  for a in range(2):
    for d in range(2):
      kept = list(KEPT[a][d])
      for k in ("feature_norms", "superposition", "loss_history", "dims_per_feature"):
        np.testing.assert_allclose(red[k][a, d, 0, 0], res[k][a, d, 0, 0, kept].mean(0),
                                   rtol=1e-6, atol=1e-7, err_msg=k)
  assert red["phase"][0, 0, 0, 0] == 3  # majority of the kept seeds, not of all three
  assert red["phase"][1, 1, 0, 0] == 0
  assert red.meta["seed_rule"] == "trimmed_mean" and res.reduce_seeds("best").meta["seed_rule"] == "best"
  for k in results.PARAMETERS:
    assert k not in red.data
  with pytest.raises(KeyError, match="holds no weights"):
    red["W"]


def test_trimmed_mean_reduction_round_trips(tmp_path):
  """A saved trimmed_mean reduction loads back without weights; a best one needs them."""
  red = _seed_result().reduce_seeds("trimmed_mean")
  back = results.load(results.save(red, tmp_path / "trimmed.npz"))
  assert set(back.data) == set(red.data)
  np.testing.assert_array_equal(back["feature_norms"], red["feature_norms"])
  best = _seed_result().reduce_seeds("best")
  del best.data["W"]
  with pytest.raises(results.ResultFileError, match="missing entries"):
    results.load(results.save(best, tmp_path / "best.npz"))


def test_reduce_seeds_errors():
  """An unknown rule raises; so does reducing a result with no seed axis left."""
  res = _result()
  with pytest.raises(ValueError, match="unknown seed rule"):
    res.reduce_seeds("median")
  with pytest.raises(ValueError, match="no seed axis"):
    res.sel(seed=0).reduce_seeds("best")


def test_trimmed_mean_skips_diverged_seeds():
  """Two diverged seeds of three: the mean uses the healthy one only, no NaN leaks out.

  A point whose kept seeds all diverged is itself flagged diverged.
  """
  res = _result()
  res.data["eval_loss"][...] = np.array([0.1, 0.2, 0.3], np.float32)
  res.data["diverged"][0, 0, 0, 0] = [False, True, True]
  res.data["eval_loss"][0, 0, 0, 0] = [0.1, np.nan, np.nan]
  res.data["feature_norms"][0, 0, 0, 0, 1:] = np.nan
  res.data["diverged"][1, 1, 0, 0] = True
  res.data["eval_loss"][1, 1, 0, 0] = np.nan
  red = res.reduce_seeds("trimmed_mean")
  np.testing.assert_allclose(red["feature_norms"][0, 0, 0, 0], res["feature_norms"][0, 0, 0, 0, 0])
  assert not red["diverged"][0, 0, 0, 0]
  assert red["diverged"][1, 1, 0, 0]
  assert not red["diverged"][0, 1, 0, 0]


def test_phase_tie_goes_to_best_seed():
  """With two kept seeds that disagree, the best seed's phase wins, not the lower index."""
  res = _result()
  res.data["eval_loss"][0, 0, 0, 0] = [0.5, 0.1, 0.9]
  res.data["phase"][0, 0, 0, 0] = [1, 3, 0]
  assert res.reduce_seeds("trimmed_mean")["phase"][0, 0, 0, 0] == 3


def test_reduced_result_round_trips(tmp_path):
  """A result saved after sel()/reduce_seeds() loads back with the same axes."""
  red = _result().reduce_seeds("best").sel(lr=_result().coords["lr"][0])
  back = results.load(results.save(red, tmp_path / "reduced.npz"))
  assert back.axes == red.axes
  for k in red.data:
    np.testing.assert_array_equal(back[k], red[k], err_msg=k)
