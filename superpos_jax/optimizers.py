"""The optimiser registry: each optimiser a factory of the swept learning rate and weight
decay, defined once and registered by name (`SweepSpec(optimizer=...)`, result metadata).

    register_optimizer("sgd", lambda lr, wd: optax.chain(
        optax.add_decayed_weights(wd), optax.sgd(lr)), "SGD with decoupled decay")

Both hyperparameters come as arrays (one per grid point, under vmap), so a new value
needs no recompilation; the optimiser's state is made with the point's own values
(`train.make_train`), so one that keeps them in its state (`optax.inject_hyperparams`)
trains as it should.
"""

from __future__ import annotations

from typing import Callable

import optax

from superpos_jax import families


def adamw(lr, weight_decay) -> optax.GradientTransformation:
  """AdamW with PyTorch's defaults (betas 0.9/0.999, eps 1e-8); the decay applies to W and
  b alike, as `torch.optim.AdamW` does when given all parameters. Both hyperparameters may
  be arrays, so sweeping them needs no recompilation."""
  return optax.adamw(learning_rate=lr, weight_decay=weight_decay)


def register_optimizer(name: str, factory: Callable[..., optax.GradientTransformation],
                       description: str, *, version: str | None = None,
                       overwrite: bool = False) -> families.Optimizer:
  """Adds an optimiser; `SweepSpec(optimizer=name)` then trains with it.

  Args:
    factory: `factory(lr, weight_decay) -> optax.GradientTransformation` of the two
      swept hyperparameters (arrays under vmap: a new value needs no recompilation),
      e.g. `lambda lr, wd: optax.chain(optax.clip_by_global_norm(1.0),
      optax.adamw(lr, weight_decay=wd))`.
    version: a label of what the code digest cannot see; changing it changes the
      identity of results trained with the optimiser.
    overwrite: replace an optimiser of the same name (never reusing a program or a
      cached result of the old one).
  """
  if not callable(factory):
    raise families.RegistryError(f"optimizer {name!r}: expected a factory, got {factory!r}")
  return families.add("optimizer", families.Optimizer(name, description, factory, version),
                      overwrite=overwrite)


register_optimizer("adamw", adamw,
                   "AdamW, PyTorch's defaults (betas 0.9/0.999, eps 1e-8, decoupled decay)")
