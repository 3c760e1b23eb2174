"""`SweepResult.to_xarray`: labelled arrays with the grid axes as coordinates."""

import json

import numpy as np
import pytest

from superpos_jax import sweep
from superpos_jax.spec import SweepSpec

xr = pytest.importorskip("xarray")

SPEC = SweepSpec(n=2, m=1, activations=("relu", "tanh"), densities=(1.0, 0.1),
                 importance_kind="relative", importances=(0.5, 2.0), seeds=(0, 1),
                 steps=20, log_every=10, batch_size=64, eval_size=256)


@pytest.fixture(scope="module")
def result():
  return sweep.run(SPEC, progress=False)


def test_dataset_dims_coords_and_values(result):
  ds = result.to_xarray()
  assert ds["W"].dims == ("activation", "density", "importance", "lr", "weight_decay",
                            "init_scale", "seed", "m", "n")
  assert ds["loss_history"].dims[-1] == "history"
  np.testing.assert_array_equal(ds["history"].values, SPEC.history_steps())
  assert list(ds["activation"].values) == ["relu", "tanh"]
  np.testing.assert_array_equal(ds["density"].values, SPEC.densities)
  # .sel by coordinate value agrees with SweepResult.sel.
  np.testing.assert_array_equal(
      ds["W"].sel(activation="tanh", density=0.1).values,
      result.sel(activation="tanh", density=0.1)["W"])
  np.testing.assert_array_equal(ds["importance_vector"].values, SPEC.importance_matrix())
  assert SweepSpec.from_dict(json.loads(ds.attrs["spec"])) == SPEC
  assert json.loads(ds.attrs["env"])["backend"] == "cpu"
  assert ds.attrs["spec_digest"] == SPEC.digest()


def test_groupby_and_reduced_results(result):
  ds = result.reduce_seeds("best").to_xarray()
  assert "seed" not in ds.dims
  best = ds["eval_loss"].groupby("activation").min(...)
  assert best.sizes == {"activation": 2}
  np.testing.assert_allclose(best.sel(activation="relu").item(),
                             np.nanmin(result.sel(activation="relu")["eval_loss"]))


def test_netcdf_round_trip(result, tmp_path):
  """The dataset can be written to and read from netCDF (scipy's writer, netCDF3)."""
  pytest.importorskip("scipy")
  path = tmp_path / "r.nc"
  result.to_xarray().to_netcdf(path)
  back = xr.load_dataset(path)
  np.testing.assert_array_equal(back["W"].values, result["W"])
  np.testing.assert_array_equal(back["diverged"].values, result["diverged"])


def test_clear_error_without_xarray(result, monkeypatch):
  import builtins
  real_import = builtins.__import__

  def no_xarray(name, *args, **kwargs):
    if name == "xarray":
      raise ImportError("No module named 'xarray'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_xarray)
  with pytest.raises(ImportError, match=r"superpos_jax\[xarray\]"):
    result.to_xarray()
