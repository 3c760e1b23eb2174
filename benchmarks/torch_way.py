"""The way most researchers train toy models of superposition today, in PyTorch.

The TMS notebook's loop (Elhage et al. 2022) and its derivatives: one weight tensor with
an instances axis, `W [I, m, n]`, whose I instances are the grid points of one
activation, a batched `torch.einsum` forward and an eager `torch.optim.AdamW` step per
training step; one such model per activation, trained one activation after another.
It does the engine's work per model-step (`superpos_jax.train`):

  data     a fresh batch every step: `u ~ U[0,1)^[I, B, n]` from torch's generator, each
           feature present with probability `density` (per instance) and then U[0,1),
           by `data.thin`'s trick (`u < density`, value `u / density`): one uniform per
           feature and instance, where the notebook draws two (mask and value);
  model    `h = W x`, `out = act(Wᵀ h + b)`; W from the spec's init family (per-model
           Xavier normal, std `sqrt(2/(n+m))`, by default), b = 0;
  loss     `Σ_i I_i (x_i - out_i)²` averaged over the batch, one per instance; their sum
           is differentiated (instances do not interact: each gets its own gradient);
  AdamW    the spec's lr and weight decay, betas (0.9, 0.999), eps 1e-8, on W and b, as
           the engine's `optax.adamw`; Adam is elementwise, so one optimiser over the
           instance tensors is one AdamW per instance;
  logging  the mean loss of each log window (one host sync per window, as a notebook's
           progress print) and the loss on a fixed evaluation set at the end.

The random numbers are torch's, not the engine's, so the final weights agree with the
engine's in distribution (a test compares losses), not number for number.

    run = train_grid(spec, compile=False)   # TorchRun: compile_s, run_s, W [P, m, n], ...
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

import looped
from superpos_jax import inits
from superpos_jax.spec import SweepSpec
from superpos_jax.train import EVAL_SEED

TorchFn = Callable[[torch.Tensor], torch.Tensor]

# The study's activations on `[..., n]` (features last, torch's convention).
ACTIVATIONS: dict[str, TorchFn] = {
    "linear": lambda z: z,
    "relu": torch.relu,
    "gelu": F.gelu,  # exact, with erf (approximate="none"), as the engine's
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "solu": lambda z: z * torch.softmax(z, dim=-1),  # over each example's n features
}


class CompileFailed(RuntimeError):
  """`torch.compile` did not work on this machine; the message says why."""


class TorchRun(NamedTuple):
  """A grid trained the PyTorch way, in the engine's flat point order."""

  compile_s: float  # torch.compile's first calls (compile) or the first step (eager)
  run_s: float  # every step and evaluation of every activation, warm-up excluded
  W: np.ndarray  # [P, m, n] final weights
  b: np.ndarray  # [P, n] final biases
  loss_history: np.ndarray  # [P, T] mean training loss of each log window
  eval_loss: np.ndarray  # [P] loss on the fixed evaluation set


class Instances(NamedTuple):
  """The grid points of one activation: the instances axis of one model."""

  activation: str
  points: np.ndarray  # [I] flat grid point of each instance
  density: torch.Tensor  # [I, 1, 1]
  importance: torch.Tensor  # [I, 1, n]


def _one(values, what: str) -> float:
  """The single value of a grid axis that one `torch.optim.AdamW` group must share."""
  values = sorted(set(float(v) for v in values))
  if len(values) != 1:
    raise ValueError(f"the PyTorch way needs one {what} for the whole grid (AdamW's "
                     f"hyperparameters are per parameter group, not per instance), got "
                     f"{values}")
  return values[0]


def hyperparameters(spec: SweepSpec) -> tuple[float, float, float]:
  """(lr, weight decay, init scale) of `spec`, each single-valued.

  Raises:
    ValueError: an axis has several values, or a model or data family other than the
      bottleneck with independent features (the only ones written here).
  """
  if spec.model != "bottleneck" or spec.data != "independent":
    raise ValueError("the PyTorch way trains the bottleneck model on independent features")
  return (_one(spec.lrs, "learning rate"), _one(spec.weight_decays, "weight decay"),
          _one(spec.init_scales, "init scale"))


def instances_by_activation(spec: SweepSpec) -> list[Instances]:
  """One `Instances` per activation of `spec`, in its order, from `looped.grid_points`."""
  gp = looped.grid_points(spec)
  out = []
  for a, name in enumerate(spec.activations):
    if name not in ACTIVATIONS:
      raise ValueError(f"no PyTorch version of activation {name!r}; have "
                       f"{', '.join(ACTIVATIONS)}")
    points = np.flatnonzero(gp.activation == a)
    out.append(Instances(name, points,
                         torch.from_numpy(gp.density[points]).reshape(-1, 1, 1),
                         torch.from_numpy(gp.importance[points])[:, None, :]))
  return out


def make_loss(act: TorchFn) -> Callable[..., torch.Tensor]:
  """The notebook's per-instance loss, of uniforms so that the thinning is compiled too.

  Returns:
    `loss(W [I, m, n], b [I, n], u [I, B, n], density [I, 1, 1], importance [I, 1, n])
    -> [I]`, each instance's batch-mean importance-weighted squared error.
  """

  def loss(W, b, u, density, importance):
    x = torch.where(u < density, u / density, 0.0)  # [I, B, n], see data.thin
    h = torch.einsum("ibn,imn->ibm", x, W)
    out = act(torch.einsum("ibm,imn->ibn", h, W) + b[:, None, :])
    return (importance * (x - out) ** 2).sum(-1).mean(-1)

  return loss


def init_model(spec: SweepSpec, count: int, scale: float,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
  """`W [count, m, n]` from the spec's init family (std per model), `b [count, n]` = 0."""
  std = scale * inits.init_std(spec.n, spec.m, spec.init, spec.init_instances)
  W = torch.randn((count, spec.m, spec.n), generator=generator) * std
  return W.requires_grad_(), torch.zeros((count, spec.n), requires_grad=True)


def warm_up(loss, W: torch.Tensor, b: torch.Tensor, inst: Instances, batch_size: int) -> float:
  """Seconds of one forward and backward on copies of the parameters: for a compiled
  `loss` its compilation (forward and backward graphs), else the first call's set-up.

  Raises:
    CompileFailed: `torch.compile` failed (no C++ compiler, say).
  """
  copies = [p.detach().clone().requires_grad_() for p in (W, b)]
  u = torch.rand((W.shape[0], batch_size, W.shape[2]), generator=torch.Generator())
  t0 = time.perf_counter()
  try:
    loss(*copies, u, inst.density, inst.importance).sum().backward()
  except Exception as e:  # inductor fails in many ways (compiler, linker, missing headers)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise CompileFailed(f"{type(e).__name__}: {first}"[:300]) from e
  return time.perf_counter() - t0


def fit(spec: SweepSpec, inst: Instances, loss, eval_loss, W: torch.Tensor, b: torch.Tensor,
        lr: float, weight_decay: float, generator: torch.Generator) -> tuple[list, torch.Tensor]:
  """Every step of one instance-batched model, then its evaluation.

  Args:
    spec: steps, batch size, log window and evaluation size.
    inst: the model's instances (their densities and importances).
    loss: `make_loss`'s function, compiled or not, for the steps.
    eval_loss: the same, uncompiled: the evaluation batch has another shape.
    W, b: the parameters, `[I, m, n]` and `[I, n]`, leaves that require grad.
    lr, weight_decay: AdamW's, shared by every instance.
    generator: draws every batch.

  Returns:
    (history: one `[I]` list per log window, eval loss `[I]`); W and b are trained in
    place.
  """
  opt = torch.optim.AdamW([W, b], lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999),
                          eps=1e-8)
  shape = (W.shape[0], spec.batch_size, spec.n)
  history, window, length = [], torch.zeros(W.shape[0]), 0
  for t in range(spec.steps):
    losses = loss(W, b, torch.rand(shape, generator=generator), inst.density, inst.importance)
    opt.zero_grad(set_to_none=True)
    losses.sum().backward()
    opt.step()
    window += losses.detach()
    length += 1
    if length == spec.log_every or t + 1 == spec.steps:
      history.append((window / length).tolist())  # the loop's one host sync per window
      window, length = torch.zeros(W.shape[0]), 0
  # One fixed evaluation set for every model, thinned by each instance's density.
  u_eval = torch.rand((1, spec.eval_size, spec.n),
                      generator=torch.Generator().manual_seed(EVAL_SEED))
  with torch.no_grad():
    final = eval_loss(W, b, u_eval.expand(W.shape[0], -1, -1), inst.density, inst.importance)
  return history, final


def choose_threads(spec: SweepSpec, steps: int = 5) -> tuple[int, dict[int, float]]:
  """The faster of 1 thread and one per core on a `steps`-step eager run of `spec`.

  On a busy shared machine torch's OpenMP threads wait on each other (occhio_way saw 2
  threads run 14x slower than 1); on a quiet one more threads win at large n.

  Returns:
    `(threads, {threads: run seconds of the trial})`.
  """
  import dataclasses
  trial = dataclasses.replace(spec, steps=steps, log_every=steps)
  probe = {t: train_grid(trial, threads=t).run_s for t in sorted({1, os.cpu_count() or 1})}
  return min(probe, key=probe.get), probe


def train_grid(spec: SweepSpec, *, compile: bool = False, seed: int = 0,
               threads: int | None = None) -> TorchRun:
  """Trains every grid point of `spec` the PyTorch way, activation after activation.

  Args:
    spec: the grid; one learning rate, weight decay and init scale (see
      `hyperparameters`).
    compile: wrap each activation's loss in `torch.compile` (forward and backward
      compiled by inductor; the optimiser step stays eager, as `torch.compile(model)`
      leaves it).
    seed: seeds the one generator that draws the initial weights and every batch, as a
      notebook's `torch.manual_seed`.
    threads: torch's intra-op threads; None = one per core, as the benchmark runs it.

  Returns:
    A `TorchRun`; `compile_s` and `run_s` sum over the activations.

  Raises:
    CompileFailed: `compile` and `torch.compile` did not work.
  """
  torch.set_num_threads(threads or os.cpu_count() or 1)
  lr, weight_decay, scale = hyperparameters(spec)
  generator = torch.Generator().manual_seed(seed)
  P, windows = spec.num_models, -(-spec.steps // spec.log_every)
  W, b = np.zeros((P, spec.m, spec.n), np.float32), np.zeros((P, spec.n), np.float32)
  history, final = np.zeros((P, windows), np.float32), np.zeros(P, np.float32)
  compile_s = run_s = 0.0
  # Inductor keeps compiled graphs on disk between processes; without that cache its
  # compile time is a first run's, like the JAX ways' (which keep none).
  with torch._inductor.config.patch(force_disable_caches=True), warnings.catch_warnings():
    warnings.filterwarnings("ignore", "dynamo_pgo force disabled")  # as intended
    for inst in instances_by_activation(spec):
      eager = make_loss(ACTIVATIONS[inst.activation])
      if compile:
        torch._dynamo.reset()  # one activation's graphs at a time: no recompile limit
      loss = torch.compile(eager, dynamic=False) if compile else eager
      Wt, bt = init_model(spec, len(inst.points), scale, generator)
      compile_s += warm_up(loss, Wt, bt, inst, spec.batch_size)
      t0 = time.perf_counter()
      hist, ev = fit(spec, inst, loss, eager, Wt, bt, lr, weight_decay, generator)
      run_s += time.perf_counter() - t0
      W[inst.points], b[inst.points] = Wt.detach().numpy(), bt.detach().numpy()
      history[inst.points], final[inst.points] = np.asarray(hist).T, ev.numpy()
  return TorchRun(compile_s, run_s, W, b, history, final)
