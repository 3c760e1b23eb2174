"""JAX's persistent compilation cache (`host.enable_compile_cache`): a program compiled
once is loaded, not compiled, after the in-memory caches are gone (a new process, a
restarted notebook), and a changed program never meets another's executable."""

import os

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from superpos_jax import activations, host, program, sweep
from superpos_jax.spec import SweepSpec
from tests.test_sweep import CompileEvents

MISS = "/jax/compilation_cache/cache_misses"
SPEC = dict(n=5, m=2, activations=("cached_act",), densities=(1.0, 0.1), steps=20, log_every=10,
            batch_size=32, eval_size=64)


def _forget_in_memory():
  """What a new process starts without: JAX's and the engine's in-memory caches."""
  jax.clear_caches()
  program.grid_program.cache_clear()
  program.stage_programs.cache_clear()


@pytest.mark.slow  # long: an end-to-end run, behind --runslow (docs/usage.md, "Tests")
def test_cached_program_is_loaded_and_a_changed_one_is_not(tmp_path):
  folder = str(tmp_path / "compiled")
  previous = jax.config.jax_compilation_cache_dir
  try:
    assert host.enable_compile_cache(folder) == folder
    activations.register("cached_act", jax.nn.relu, "relu, for this test", overwrite=True)
    _forget_in_memory()
    with CompileEvents() as first:
      one = sweep.run(SweepSpec(**SPEC), progress=False)
    assert first.events.count(MISS) >= 1 and os.listdir(folder)
    _forget_in_memory()
    with CompileEvents() as again:
      two = sweep.run(SweepSpec(**SPEC), progress=False)
    assert again.events.count(MISS) == 0 and again.events.count(CompileEvents.CACHE_HIT) >= 1
    np.testing.assert_array_equal(one["W"], two["W"])
    # The same name, another function: another program text, so no cached executable.
    activations.register("cached_act", jax.nn.softplus, "softplus now", overwrite=True)
    _forget_in_memory()
    with CompileEvents() as changed:
      three = sweep.run(SweepSpec(**SPEC), progress=False)
    assert changed.events.count(MISS) >= 1
    assert not np.allclose(three["W"], one["W"])
  finally:
    jax.config.update("jax_compilation_cache_dir", previous)
    compilation_cache.reset_cache()
    activations._REGISTRY.pop("cached_act", None)


def test_the_cache_can_be_turned_off(monkeypatch):
  monkeypatch.setenv("SUPERPOS_JAX_COMPILE_CACHE", "off")
  assert host.compile_cache_dir() is None and host.enable_compile_cache() is None
  monkeypatch.delenv("SUPERPOS_JAX_COMPILE_CACHE")
  monkeypatch.setenv("SUPERPOS_JAX_CACHE", "/somewhere")
  assert host.compile_cache_dir() == "/somewhere/compiled"
