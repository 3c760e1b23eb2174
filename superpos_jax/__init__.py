"""superpos_jax: whole grids of toy models of superposition in one compiled JAX program.

The names a notebook needs, imported on first use (so that `superpos_jax.results` and
the plotting layer still load without jax)::

    import superpos_jax as sj
    sj.register_model("mine", MyFlaxModule, "my model")
    res = sj.run(sj.SweepSpec(n=10, m=5, model="mine", densities=(1.0, 0.1)))
    sj.save(res, "runs/mine.npz")
"""

__version__ = "0.1.0"

# name -> (module, attribute)
_EXPORTS = {
    "SweepSpec": ("superpos_jax.spec", "SweepSpec"),
    "SpecError": ("superpos_jax.spec", "SpecError"),
    "SweepResult": ("superpos_jax.results", "SweepResult"),
    "run": ("superpos_jax.sweep", "run"),
    "load": ("superpos_jax.results", "load"),
    "save": ("superpos_jax.results", "save"),
    "register_activation": ("superpos_jax.activations", "register"),
    "register_model": ("superpos_jax.model", "register_model"),
    "register_data": ("superpos_jax.data", "register_data"),
    "register_optimizer": ("superpos_jax.optimizers", "register_optimizer"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    import importlib
    module, attr = _EXPORTS[name]
    return getattr(importlib.import_module(module), attr)
  raise AttributeError(f"module 'superpos_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_EXPORTS))
