"""The explorer: pages built from a result show that result's numbers, in a real browser.

The page test drives headless Chromium (Debian's `chromium` + `chromium-driver`, see
README): it hovers and clicks one known cell of an n = 2 phase diagram and reads the
numbers the page shows back against the result file. It skips, saying why, only where
no browser can be had.
"""

import base64
import json
import os
import re
import subprocess
import sys
import zlib

import numpy as np
import pytest

from superpos_jax import results, sweep
from superpos_jax.sae import results as sae_results
from superpos_jax.sae import summary as summary_sae
from superpos_jax.interactive import browser, cube, figures, page
from superpos_jax.phases import PHASES
from superpos_jax.sae.spec import SAESpec
from superpos_jax.spec import SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = SweepSpec(n=2, m=1, activations=("linear", "relu"), densities=(1.0, 0.1, 0.01),
                 importance_kind="relative", importances=(0.3, 3.0), seeds=(0, 1, 2),
                 steps=40, log_every=10, eval_size=256, batch_size=64)
# The cell the browser test hovers and clicks: relu, density 0.1, r = 3 (grid indices).
CELL = {"activation": 1, "density": 1, "importance": 1}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A small trained n = 2 result, its file, and its explorer page."""
  folder = tmp_path_factory.mktemp("explore")
  path = results.save(sweep.run(SPEC, progress=False), folder / "n2")
  return results.load(path), path, page.write(path, str(folder / "pages" / "n2.html"))


def _blocks(html: str):
  meta = json.loads(re.search(r'id="explorer-meta">(.*?)</script>', html, re.S)[1])
  data = re.search(r'id="explorer-data">(.*?)</script>', html, re.S)[1]
  return meta, zlib.decompress(base64.b64decode(data))


def _array(meta, blob, ref):
  """An array of the page's data block, decoded as explorer.js decodes it."""
  e = meta["arrays"][ref]
  dtype = np.dtype(e["dtype"]).newbyteorder("<")
  planes = np.frombuffer(blob, np.uint8, count=e["count"] * dtype.itemsize, offset=e["offset"])
  a = planes.reshape(dtype.itemsize, -1).T.copy().view(dtype).reshape(e["shape"])
  if e["encoding"] == "log16":
    a = np.cumsum(a.astype(np.int64), axis=-1) % 2**16
    a = np.where(a == 65535, np.nan, 10 ** (e["lo"] + a * (e["hi"] - e["lo"]) / 65534))
  return a


def test_page_holds_the_result_arrays(saved):
  """The page's data block is the file's arrays: float32 exact, loss curves to 1e-4."""
  res, _, path = saved
  with open(path) as f:
    html = f.read()
  meta, blob = _blocks(html)
  assert '<script src="plotly.min.js">' in html and "cdn" not in html.lower()
  assert os.path.exists(os.path.join(os.path.dirname(path), page.PLOTLY_FILE))
  np.testing.assert_array_equal(_array(meta, blob, "metric:eval_loss"), res["eval_loss"])
  np.testing.assert_array_equal(_array(meta, blob, "metric:phase"), res["phase"])
  np.testing.assert_array_equal(_array(meta, blob, "model:W"), res["W"])
  np.testing.assert_array_equal(_array(meta, blob, "best"), res.best_seed())
  typical = res.reduce_seeds("trimmed_mean")
  np.testing.assert_array_equal(_array(meta, blob, "typical:phase"), typical["phase"])
  np.testing.assert_allclose(_array(meta, blob, "model:loss_history"), res["loss_history"],
                             rtol=1.2e-4)
  assert list(meta["presets"]) == ["phase diagram", "any axes"]


def test_seed_agreement_counts_the_healthy_seeds_in_the_shown_phase(saved):
  res = saved[0]
  c = cube.build(res)
  phase, ok = res["phase"], ~res["diverged"]
  ax = res.axes.index("seed")
  for point in ({"activation": 1, "density": 2, "importance": 0, "lr": 0, "weight_decay": 0,
                 "init_scale": 0}, {**{a: 0 for a in res.axes if a != "seed"}}):
    seeds = [c.model_index(point, k) for k in range(3)]
    for mode in ("best", "2"):
      shown = phase[seeds[c.seed_of(point, mode)]]
      assert c.value("agree", point, mode) == sum(phase[i] == shown and ok[i] for i in seeds)
    majority = res.reduce_seeds("trimmed_mean")["phase"][tuple(point[a] for a in res.axes[:ax])]
    assert c.value("agree", point, "typical") == sum(phase[i] == majority and ok[i] for i in seeds)


def test_explore_command_imports_no_jax_and_fails_in_one_line(saved, tmp_path, capsys):
  _, result_path, _ = saved
  out = tmp_path / "x.html"
  code = ("import sys, runpy; sys.argv = ['explore', sys.argv[1], '--out', sys.argv[2]]\n"
          "try:\n  runpy.run_module('superpos_jax.explore', run_name='__main__')\n"
          "except SystemExit as e:\n  assert e.code == 0, e.code\n"
          "assert 'jax' not in sys.modules, 'jax was imported'\n")
  proc = subprocess.run([sys.executable, "-c", code, result_path, str(out)], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert out.exists() and (tmp_path / page.PLOTLY_FILE).exists()
  from superpos_jax import explore
  assert explore.main([str(tmp_path / "none.npz")]) == 2
  assert explore.main([result_path, "--out", str(tmp_path / "x.png")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 2 and "no such file" in err and "must name an .html file" in err


def _sae_result(rng) -> sae_results.SAEResult:
  """A hand-made SAE result (no training): a generic view must read any result's axes."""
  coords = {"activation": np.array(["relu", "gelu"]), "density": np.array([1.0, 0.1]),
            "importance": np.array([0.7]), "lr": np.array([1e-3]), "weight_decay": np.array([0.01]),
            "init_scale": np.array([1.0]), "seed": np.array([0, 1]),
            "dict_multiple": np.array([1, 2]), "l1": np.array([0.1, 0.3]),
            "sae_seed": np.array([0, 1])}
  grid = tuple(len(v) for v in coords.values())
  toy = grid[:7]
  freq = rng.uniform(0, 1, grid + (8,))
  freq[..., 0, :, :, 4:] = np.nan  # x1 dictionaries have n = 4 latents
  data = {"decoder": rng.normal(size=grid + (3, 8)), "loss_history": rng.uniform(0.1, 1, grid + (3,)),
          "eval_loss": rng.uniform(0.1, 1, grid), "reconstruction_error": rng.uniform(0, 1, grid),
          "l0": rng.uniform(0, 4, grid), "frequency": freq,
          "max_cosine": rng.uniform(0, 1, grid + (4,)), "diverged": np.zeros(grid, bool),
          "coactivation": rng.uniform(0, 1, grid + (8, 4)), "feature_frequency": rng.uniform(0, 1, grid + (4,)),
          "mse": rng.uniform(0, 1, grid), "hidden_variance": rng.uniform(1, 2, grid)}
  toy_data = {"toy_W": rng.normal(size=toy + (3, 4)), "toy_eval_loss": rng.uniform(size=toy),
              "toy_diverged": np.zeros(toy, bool)}
  meta = {"sae_spec": SAESpec(dict_multiples=(1, 2), l1s=(0.1, 0.3), sae_seeds=(0, 1)).to_dict(),
          "toy_spec": SweepSpec(n=4, m=3, activations=("relu", "gelu"), densities=(1.0, 0.1),
                                seeds=(0, 1)).to_dict()}
  return sae_results.SAEResult(coords, data, toy_data, {"history_steps": np.arange(1, 4)}, meta)


def test_an_sae_result_gets_the_generic_view_with_the_summaries_numbers(tmp_path):
  res = _sae_result(np.random.default_rng(0))
  c = cube.build(res)
  assert [a.name for a in c.axes] == ["activation", "density", "seed", "dict_multiple", "l1",
                                      "sae_seed"]
  values = summary_sae.sae_values(res)
  typical = summary_sae.reduce(values["mmcs"], summary_sae.first_setting(res), summary_sae.TYPICAL)
  best = summary_sae.reduce(values["mmcs"], summary_sae.first_setting(res), summary_sae.BEST)
  for a, d, k, l in np.ndindex(2, 2, 2, 2):
    point = {"activation": a, "density": d, "dict_multiple": k, "l1": l}
    assert c.value("mmcs", point, "typical") == typical[a, d, k, l]
    assert c.value("mmcs", point, "best") == best[a, d, k, l]
  state = next(iter(page.views.presets(c).values()))
  assert state["kind"] == "heatmap" and state["metric"] == "mmcs" and state["facet"] == "activation"
  fig = figures.figure_view(c)
  assert len([t for t in fig.data if t.type == "heatmap"]) == 2
  assert os.path.getsize(page.write(res, str(tmp_path / "sae.html"))) > 1000


def _same_heatmaps(driver, figure) -> None:
  """The page's main chart has `figure`'s traces, its heatmaps cell for cell."""
  z = driver.execute_script("return document.getElementById('main').data.map(t => t.z || null)")
  expected = [getattr(t, "z", None) for t in figure.data]
  assert len(z) == len(expected) and sum(w is not None for w in expected) == 2
  for got, want in zip(z, expected):
    if want is not None:  # JSON has no NaN: the page's NaN cells arrive as None
      np.testing.assert_array_equal(np.array(got, float), np.array(want, float))


def test_hover_and_click_show_that_models_numbers_in_chromium(saved, tmp_path):
  """Headless Chromium: the page loads with no console error and no network request;
  hovering the relu cell (density 0.1, r = 3) shows its phase and eval loss; clicking it
  opens the panel with every seed's eval loss, W and b exactly as in the file."""
  reason = browser.missing()
  if reason:
    pytest.skip(f"no browser to drive: {reason}")
  from selenium.webdriver.support.ui import Select
  res, _, path = saved
  point = dict(CELL, lr=0, weight_decay=0, init_scale=0)
  seeds = [tuple(point[a] for a in res.axes[:-1]) + (k,) for k in range(3)]
  best = res.best_seed()[seeds[0][:-1]]
  with browser.chromium() as driver:
    seconds = browser.open_page(driver, path)
    assert seconds < 30
    assert browser.console_errors(driver) == []
    urls = browser.requested_urls(driver)
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    _same_heatmaps(driver, figures.figure_view(res))  # the notebook figure's cells
    cell = (SPEC.densities[CELL["density"]], SPEC.importances[CELL["importance"]])
    browser.point(driver, 1, *cell)  # the relu panel's heatmap
    hover = driver.execute_script(
        "return [...document.querySelectorAll('.hoverlayer .hovertext')].map(e => e.textContent).join(' ')")
    phase_name = PHASES[int(res["phase"][seeds[best]])]
    assert phase_name in hover and "density 1-S: 0.1" in hover, hover
    loss = float(re.search(r"eval loss: ([0-9.e-]+)", hover)[1])
    np.testing.assert_allclose(loss, res["eval_loss"][seeds[best]], rtol=1e-3)
    agree = sum(res["phase"][s] == res["phase"][seeds[best]] and not res["diverged"][s] for s in seeds)
    assert f"seeds (of 3) in the shown phase: {agree}" in hover, hover
    browser.point(driver, 1, *cell, click=True)
    rows = driver.find_elements("css selector", "#seed-table tbody tr")
    assert len(rows) == 3
    assert "density 1-S = 0.1" in driver.find_element("id", "panel-title").text
    for k, row in enumerate(rows):
      value = lambda sel: row.find_element("css selector", sel).get_attribute("data-v")
      assert float(value("td[data-metric=eval_loss]")) == float(res["eval_loss"][seeds[k]])
      assert int(value("td[data-metric=phase]")) == int(res["phase"][seeds[k]])
      assert json.loads(value("td[data-model=W]")) == [float(v) for v in res["W"][seeds[k]].ravel()]
      assert json.loads(value("td[data-model=b]")) == [float(v) for v in res["b"][seeds[k]].ravel()]
      assert ("(best)" in row.text) == (k == best)
    # Another seed rule redraws the same cells as figure_view does under it.
    Select(driver.find_element("css selector", "select[data-control=seeds]")).select_by_value("typical")
    _same_heatmaps(driver, figures.figure_view(res, seeds="typical"))
    assert browser.console_errors(driver) == []
    assert all(u.startswith(("file://", "data:")) for u in browser.requested_urls(driver))
    browser.screenshot(driver, str(tmp_path / "clicked.png"))
  assert os.path.getsize(tmp_path / "clicked.png") > 10_000
