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

from superpos_jax import families, transforms


def adamw(lr, weight_decay) -> optax.GradientTransformation:
  """AdamW with PyTorch's defaults (betas 0.9/0.999, eps 1e-8); the decay applies to W and
  b alike, as `torch.optim.AdamW` does when given all parameters. Both hyperparameters may
  be arrays, so sweeping them needs no recompilation."""
  return optax.adamw(learning_rate=lr, weight_decay=weight_decay)


def register_optimizer(name: str, factory: Callable[..., optax.GradientTransformation],
                       description: str, *, takes_steps: bool = False,
                       signed_decay: bool = False, version: str | None = None,
                       overwrite: bool = False) -> families.Optimizer:
  """Adds an optimiser; `SweepSpec(optimizer=name)` then trains with it.

  Args:
    factory: `factory(lr, weight_decay) -> optax.GradientTransformation` of the two
      swept hyperparameters (arrays under vmap: a new value needs no recompilation),
      e.g. `lambda lr, wd: optax.chain(optax.clip_by_global_norm(1.0),
      optax.adamw(lr, weight_decay=wd))`.
    takes_steps: the factory also takes `steps=` (the spec's, static), e.g. for a
      learning-rate schedule.
    signed_decay: negative weight decays mean something to it (a spec may sweep them;
      refused for every other optimiser).
    version: a label of what the code digest cannot see; changing it changes the
      identity of results trained with the optimiser.
    overwrite: replace an optimiser of the same name (never reusing a program or a
      cached result of the old one).
  """
  if not callable(factory):
    raise families.RegistryError(f"optimizer {name!r}: expected a factory, got {factory!r}")
  return families.add("optimizer", families.Optimizer(
      name, description, factory, version=version, takes_steps=takes_steps,
      signed_decay=signed_decay), overwrite=overwrite)


register_optimizer("adamw", adamw,
                   "AdamW, PyTorch's defaults (betas 0.9/0.999, eps 1e-8, decoupled decay)")
register_optimizer("adamw_liu", transforms.liu_adamw,
                   "Liu et al. 2025: AdamW, decay on W only (< 0: feature norms towards 1), "
                   "10 % linear warm-up, cosine to 5 %", takes_steps=True, signed_decay=True)
