"""Test configuration: silent broadcasting is an error (most bugs here would be one)."""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


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
