"""The command line's guarantees, in-process (no training: `sweep.run` is replaced).

Bad input fails before training with one line and status 2; an unwritable result is
rescued, not lost; divergence is reported; a cached file of another spec is retrained.
"""

import errno
import glob
import os
import socket
import sys

import numpy as np
import pytest

from superpos_jax import host
from superpos_jax import cache, cli, launch, results, sweep
from superpos_jax.spec import SweepSpec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))
import phase_diagram  # noqa: E402  (an experiment script, importable from experiments/)

BASE = ["--preset", "quick", "--activations", "relu", "--densities", "1,0.1", "--steps", "20",
        "--no-plot", "--quiet"]


def fake_result(spec, diverged=None):
  """A SweepResult laid out as `sweep.run` lays out `spec`'s, with made-up numbers."""
  rng = np.random.default_rng(0)
  grid, n, m, T = spec.grid_shape, spec.n, spec.m, len(spec.history_steps())
  data = {"W": rng.normal(size=grid + (m, n)), "b": rng.normal(size=grid + (n,)),
          "loss_history": rng.uniform(size=grid + (T,)), "final_loss": rng.uniform(size=grid),
          "eval_loss": rng.uniform(size=grid),
          "diverged": np.zeros(grid, bool) if diverged is None else diverged,
          "feature_norms": rng.uniform(size=grid + (n,)),
          "superposition": rng.uniform(size=grid + (n,)),
          "feature_dimensionality": rng.uniform(size=grid + (n,)),
          "dims_per_feature": rng.uniform(size=grid)}
  if n == 2:
    data["phase"] = rng.integers(0, 5, size=grid)
  extra = {"importance_vectors": spec.importance_matrix(), "history_steps": spec.history_steps()}
  meta = {"spec": spec.to_dict(), "spec_digest": spec.digest(), "identity": spec.identity(),
          "env": {"backend": "cpu"},
          "timings": {"compile_s": 0.0, "run_s": 1.0}}
  return results.SweepResult(coords=spec.coords(), data=data, extra=extra, meta=meta)


def base_spec():
  return phase_diagram.build_spec(phase_diagram.PARSER.parse_args(BASE))


@pytest.fixture
def trained(monkeypatch):
  """Replaces training by `fake_result`; `trained.calls` counts runs, `trained.diverged`
  sets the diverged mask of the next one."""
  # In-process, the scripts' XLA flags would give every later test of this session two
  # host devices (the backend starts once); the flags are not what is tested here.
  monkeypatch.setattr(cli, "configure_host", lambda *args, **kwargs: None)

  class Trained:
    calls = 0
    diverged = None

  def run(spec, **kwargs):
    Trained.calls += 1
    return fake_result(spec, Trained.diverged)

  monkeypatch.setattr(sweep, "run", run)
  return Trained


def run_cli(capsys, *args):
  """`phase_diagram.main` through `cli.run`: (status, stderr lines)."""
  try:
    status = cli.run(phase_diagram.main, [*BASE, *args])
  except SystemExit as e:  # argparse's own errors
    status = e.code
  return status, capsys.readouterr().err.strip().splitlines()


def dirs(tmp_path):
  return ["--out", str(tmp_path / "runs")]


@pytest.mark.parametrize("args, message", [
    (["--seeds", "3000000000"], "at most 1,000,000"),
    (["--steps", "99999999999999999999"], "at most 2,147,483,647"),
    (["--out", ""], "--out must name a folder"),
    (["--process-id", "1"], "without --coordinator"),
    (["--num-processes", "2"], "without --coordinator"),
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "--process-id must be"),
    (["--densities", "1e-8"], "at least 2^-23"),
    (["--densities", ","], "at least one value"),
    (["--grid", "2000000000"], "--grid must be at most"),
    (["--grid", "3"], "--grid and --densities"),
    (["--max-memory", "1e-9"], "over the 1 B memory budget"),
    (["--out", "/dev/null/runs"], "/dev/null/runs: cannot create the folder"),
    (["--no-checkpoint", "--checkpoint-every", "60"], "contradict each other"),
])
def test_bad_input_fails_before_training(tmp_path, capsys, trained, args, message):
  """One line naming the problem, status 2, nothing trained or written."""
  status, err = run_cli(capsys, *dirs(tmp_path), *args)
  assert status == 2
  assert len(err) == 1 and message in err[0], err
  assert trained.calls == 0
  assert not glob.glob(str(tmp_path / "**" / "*.npz"), recursive=True)


def test_out_naming_a_file(tmp_path, capsys, trained):
  path = tmp_path / "taken"
  path.write_text("x")
  status, err = run_cli(capsys, "--out", str(path))
  assert status == 2 and err == [f"error: --out {path}: exists and is not a folder"]
  assert trained.calls == 0 and path.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out(tmp_path, capsys, trained):
  folder = tmp_path / "ro"
  folder.mkdir()
  folder.chmod(0o500)
  status, err = run_cli(capsys, "--out", str(folder))
  assert status == 2 and f"--out {folder}: cannot write there" in err[0]
  assert trained.calls == 0


def test_figures_folder_probed_before_training(tmp_path, capsys, trained):
  """Without --no-plot the figure folder is created and probed first as well."""
  argv = [a for a in BASE if a != "--no-plot"]
  status = cli.run(phase_diagram.main, [*argv, *dirs(tmp_path), "--figures", "/dev/null/f"])
  err = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and "--figures /dev/null/f" in err[0] and trained.calls == 0


def test_unreachable_coordinator_fails_fast(tmp_path, capsys, trained, monkeypatch):
  """A worker that cannot reach process 0 says so within the timeout (JAX would hang
  for five minutes, then abort)."""
  monkeypatch.setattr(host, "COORDINATOR_TIMEOUT_S", 0.5)
  with socket.socket() as s:  # a port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  status, err = run_cli(capsys, *dirs(tmp_path), "--coordinator", f"127.0.0.1:{port}",
                        "--num-processes", "2", "--process-id", "1")
  assert status == 2 and len(err) == 1 and "not reachable within 0.5 s" in err[0], err
  assert trained.calls == 0


def test_coordinator_port_taken_for_process_0(tmp_path, capsys, trained):
  with socket.socket() as s:
    s.bind(("", 0))
    s.listen()
    port = s.getsockname()[1]
    status, err = run_cli(capsys, *dirs(tmp_path), "--coordinator", f"localhost:{port}",
                          "--num-processes", "2", "--process-id", "0")
  assert status == 2 and "cannot listen on port" in err[0], err


def test_missing_backend_names_the_extra(tmp_path, capsys, trained):
  import jax
  try:
    jax.devices("gpu")
    pytest.skip("this machine has a GPU")
  except RuntimeError:
    pass
  status, err = run_cli(capsys, *dirs(tmp_path), "--backend", "gpu")
  assert status == 2 and "superpos_jax[cuda]" in err[0]


def full_disk_under(folder, module, monkeypatch):
  """`module.save` fails as on a full disk for paths under `folder` (ENOSPC), and works
  elsewhere (the rescue folders)."""
  save = module.save

  def full_disk(res, path):
    if str(folder) in os.fspath(path):
      raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))
    return save(res, path)

  monkeypatch.setattr(module, "save", full_disk)


def test_unwritable_result_is_rescued(tmp_path, capsys, trained, monkeypatch):
  """A save that fails after training (full disk) writes the result elsewhere, names
  both paths, and exits 1."""
  rescue = tmp_path / "rescue"
  monkeypatch.setenv("SUPERPOS_JAX_RESCUE", str(rescue))
  full_disk_under(tmp_path / "runs", results, monkeypatch)
  status, err = run_cli(capsys, *dirs(tmp_path))
  assert status == 1 and len(err) == 1, err
  (kept,) = glob.glob(str(rescue / "phase_diagram-*.npz"))
  assert "No space left on device" in err[0] and str(tmp_path / "runs") in err[0]
  assert kept in err[0]
  assert results.load(kept).spec == base_spec()


def test_partial_divergence_is_reported(tmp_path, capsys, trained):
  spec = base_spec()
  trained.diverged = np.zeros(spec.grid_shape, bool)
  trained.diverged[0, 1, 0, 0, 0, 0, 0] = True
  status, err = run_cli(capsys, *dirs(tmp_path))
  assert status == 0
  (line,) = [l for l in err if "diverged" in l]
  assert f"1 of {spec.num_models} models diverged" in line
  assert f"density={spec.densities[1]:g}" in line and "activation=relu" in line


def test_total_divergence_exits_3_and_keeps_the_result(tmp_path, capsys, trained):
  trained.diverged = np.ones(base_spec().grid_shape, bool)
  status, err = run_cli(capsys, *dirs(tmp_path))
  assert status == cli.EXIT_DIVERGED and "every one of" in err[-1] and "--lr" in err[-1]
  assert glob.glob(str(tmp_path / "runs" / "*.npz"))


def test_cached_file_of_another_spec_is_retrained(tmp_path, capsys, trained):
  """A result copied under the cached name is not trusted: retrained, and told why."""
  spec = base_spec()
  other = SweepSpec(**dict(spec.to_dict(), steps=21))
  path = cache.path_for(str(tmp_path / "runs"), "phase_diagram", "cpu", spec)
  results.save(fake_result(other), path)
  status, err = run_cli(capsys, *dirs(tmp_path))
  assert status == 0 and trained.calls == 1
  assert any("it is of another spec (steps)" in l and "training again" in l for l in err), err
  assert results.load(path).spec == spec
  # And the retrained file is reused by the next run.
  assert run_cli(capsys, *dirs(tmp_path))[0] == 0 and trained.calls == 1


def test_memory_budget_from_accelerator(capsys):
  """One accelerator's own limit (the smallest); half the host's RAM on CPU; and no
  budget, said in a warning, for an accelerator that reports none (the host's RAM says
  nothing about a GPU's memory)."""
  class Device:
    def __init__(self, platform, stats):
      self.platform, self._stats = platform, stats

    def memory_stats(self):
      return self._stats

  gpus = [Device("gpu", {"bytes_limit": 60 * 2**30}), Device("gpu", {"bytes_limit": 40 * 2**30})]
  assert launch.default_memory_budget(gpus) == 40 * 2**30
  assert launch.default_memory_budget([Device("cpu", None)]) > 2**26
  capsys.readouterr()
  assert launch.default_memory_budget([Device("gpu", None), Device("gpu", {"bytes_limit": 1})]) is None
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "report no memory limit" in err[0] and "--max-memory" in err[0]
