"""The study-disagreement checks run end to end at the quick preset and explain themselves."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_study_checks_quick_writes_summary_and_figures(tmp_path):
  """Every SoLU variant and phase-diagram variant is trained and reported, with finite
  numbers and the rule each number is about."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "study_checks.py"),
                         "--preset", "quick", "--quiet", "--explore", "--out", str(tmp_path / "runs"),
                         "--figures", str(tmp_path / "figs")],
                        capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((tmp_path / "figs" / "study_checks_summary.json").read_text())
  variants = report["solu"]["variants"]
  assert set(variants) == {"solu", "solu_batch", "solu_ln", "solu (notebook_init)",
                           "solu (softmax over instances)"}
  for row in variants.values():
    assert 0 < row["dstar_densest"] < 100 and 0 < row["dstar_sparsest"] < 100
  assert set(report["phase"]) == {"paper_setting", "notebook_init", "shared_init", "short_training"}
  assert report["phase"]["shared_init"]["settings"]["init_rng"] == "shared"
  assert report["phase"]["notebook_init"]["settings"]["init"] == "notebook"
  for act in ("relu", "gelu", "gelu_tanh", "silu"):
    for rule in ("superposition_best_seed", "superposition_typical_seed"):
      fractions = report["phase"]["paper_setting"][act][rule].values()
      assert all(0.0 <= f <= 1.0 for f in fractions)
  for fig in ("solu_dstar", "phase_basins", "phase_shared_init", "phase_notebook_init"):
    assert (tmp_path / "figs" / f"study_checks_{fig}.png").stat().st_size > 10_000
  # --explore: one page per result, as the study_checks-<variant> result files are named
  pages = {p.name for p in (tmp_path / "figs").glob("study_checks-*_explorer.html")}
  assert {f"study_checks-{k}_explorer.html" for k in report["phase"]} <= pages
  assert len(pages) == len(list((tmp_path / "runs").glob("study_checks-*.npz")))
