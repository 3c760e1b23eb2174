"""examples/quickstart.ipynb runs top to bottom (its code cells, in order, in one
namespace), so the notebook cannot rot."""

import json
import os
import tempfile

import matplotlib
import pytest

from superpos_jax import activations, cli, families

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "examples", "quickstart.ipynb")


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_quickstart_notebook_runs(tmp_path, monkeypatch, capsys):
  matplotlib.use("Agg")
  # The notebook's first call sets XLA flags; in this process they would give every later
  # test two host devices (the backend starts once).
  monkeypatch.setattr(cli, "configure_host", lambda *args, **kwargs: None)
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the notebook saves there
  with open(NOTEBOOK) as f:
    cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
  assert len(cells) >= 5
  namespace = {"__name__": "__main__"}
  try:
    for i, cell in enumerate(cells):
      exec(compile("".join(cell["source"]), f"{NOTEBOOK}[cell {i}]", "exec"), namespace)
  finally:
    activations._REGISTRY.pop("softplus", None)  # keep the registries as other tests expect
    families._MODELS.pop("hidden_bias", None)
  out = capsys.readouterr().out
  assert "0 of 64 models diverged" in out and "wrote" in out
  assert namespace["fig"].axes and namespace["w"].shape == (4, 1, 2, 1, 2)
  # The Flax family: swept over activations x densities x seeds, its own param returned.
  assert namespace["own"]["W"].shape == (2, 3, 1, 1, 1, 1, 2, 3, 6)
  assert namespace["c"].shape == (2, 3) and "HiddenBias" in out
  # The interactive views: one heatmap per activation, the panel of every seed, the page.
  assert sum(t.type == "heatmap" for t in namespace["view"].data) == 2
  assert sum(t.type == "scatter" and t.name.startswith("seed") for t in namespace["models"].data) == 2
  assert os.path.getsize(namespace["page"]) > 1000
