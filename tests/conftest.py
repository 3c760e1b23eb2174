"""Test configuration: silent broadcasting is an error (most bugs here would be one)."""

import os

# The tests in this process compile with XLA's backend (LLVM) optimisation level 0: the
# same HLO passes and layouts, unoptimised machine code. Most tests here are compile-
# bound (tiny grids, a few steps): it halves their compile time (1.75 -> 0.82 s for a
# tiny grid's program) and the default suite's wall time by about a third; numbers move
# at float rounding only (a few 1e-7 against the default, every comparison here is within
# one process or to a tolerance). The flag is removed again once the backend has started
# (`_backend_started`), so the tests' subprocesses (CLI runs, several processes, bit-
# identical reruns) run exactly what users run.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session", autouse=True)
def _backend_started():
  """Starts this process's JAX backend with `_FAST_COMPILE`, then takes the flag out of
  the environment the tests' subprocesses inherit."""
  jax.devices()
  flags = os.environ.get("XLA_FLAGS", "").replace(_FAST_COMPILE, "").strip()
  if flags:
    os.environ["XLA_FLAGS"] = flags
  else:
    os.environ.pop("XLA_FLAGS", None)
  yield


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
  # One persistent compilation cache for the session, shared by the tests' subprocesses
  # (each CLI run would otherwise compile the same quick programs again), never the
  # user's own cache folder.
  if "SUPERPOS_JAX_COMPILE_CACHE" not in os.environ:
    import tempfile
    os.environ["SUPERPOS_JAX_COMPILE_CACHE"] = tempfile.mkdtemp(prefix="superpos_jax-compiled-")
  # The generated-input tests (tests/test_generated.py) read this when they are collected:
  # a few dozen cases per test by default, thousands with --runslow.
  os.environ["SUPERPOS_JAX_RUNSLOW"] = "1" if config.getoption("--runslow") else ""


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow"):
    return
  skip = pytest.mark.skip(reason="slow: pass --runslow to run")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)
