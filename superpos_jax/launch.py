"""From a spec to its result file, and on to figures: the devices, the coordinator, the
memory budget, train or reuse, save (or rescue), report divergence, draw.

Everything that can fail is checked before training (`run_stage`); a finished training
is never thrown away (`save_or_rescue`). One path for every kind of training (a `Stage`):
the toy grid's (`train_or_load`) and the SAE stage's (`sae.stage.train_or_load`).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from typing import Any, Callable, NamedTuple

import numpy as np

from superpos_jax import cache, faults, results
from superpos_jax.cli import check_flags, figures_dir, log
from superpos_jax.errors import DivergedError, SaveError, UserError
from superpos_jax.host import (agreed, default_memory_budget, init_distributed,  # noqa: F401
                               probe_coordinator, select_devices)
from superpos_jax.gridspec import GridSpec
from superpos_jax.spec import SweepSpec


def prepare_folder(path: str, flag: str) -> str:
  """Creates `path` and proves a file can be written there, or raises a one-line
  UserError naming it: a bad output folder must fail before training, not after."""
  if not path:
    raise UserError(f"{flag} must name a folder, got ''")
  try:
    os.makedirs(path, exist_ok=True)
  except FileExistsError:
    raise UserError(f"{flag} {path}: exists and is not a folder") from None
  except OSError as e:
    raise UserError(f"{flag} {path}: cannot create the folder ({e.strerror or e})") from None
  if not os.path.isdir(path):
    raise UserError(f"{flag} {path}: exists and is not a folder")
  probe = os.path.join(path, f"{results.TMP_PREFIX}{os.getpid()}@{socket.gethostname()}@probe")
  try:
    with open(probe, "xb") as f:
      f.write(b"probe")
    os.unlink(probe)
  except OSError as e:
    raise UserError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None
  return path


# Without --checkpoint-every, runs of less work than this (model-steps x (n + m)) train in
# one call, unstaged and never checkpointed: seconds on a laptop CPU (the quick presets do
# 10^5 to 5 x 10^5), where a checkpoint could not save anything worth its stages' extra
# compiles. The others checkpoint at most every CHECKPOINT_EVERY seconds.
CHECKPOINT_MIN_WORK = 2 * 10**6
CHECKPOINT_EVERY = 300.0


def wants_checkpoints(spec: GridSpec, args: argparse.Namespace) -> bool:
  """Whether a CLI run is checkpointed: not with --no-checkpoint; with --checkpoint-every,
  always; by default, from `CHECKPOINT_MIN_WORK` up."""
  if getattr(args, "no_checkpoint", True):  # with --checkpoint-every: refused by check_flags
    return False
  return (getattr(args, "checkpoint_every", None) is not None
          or spec.num_models * spec.steps * (spec.n + spec.m) >= CHECKPOINT_MIN_WORK)


def checkpoint_dir(result_path: str) -> str:
  """Where the checkpoints of the run whose result goes to `result_path` live: beside
  it, `<name>-<backend>-<digest>.ckpt/` (one folder per spec, engine and precision)."""
  return result_path[:-len(".npz")] + ".ckpt"


def rescue_folders() -> list[str]:
  """Where a finished result goes when its own folder cannot take it, in order."""
  folders = [os.environ.get("SUPERPOS_JAX_RESCUE", ""),
             os.path.join(tempfile.gettempdir(), "superpos_jax-rescue"),
             os.path.join(os.path.expanduser("~"), ".cache", "superpos_jax", "rescue"),
             os.getcwd()]
  return [f for f in folders if f]


def save_or_rescue(res: Any, path: str, save: Callable[[Any, str], str] | None = None) -> str:
  """Saves `res` to `path` with `save` (`results.save`; `sae.results.save`); if that
  fails, to the first folder of `rescue_folders` that works, then raises `SaveError`
  naming both (a finished training is never discarded)."""
  save = results.save if save is None else save
  try:
    return save(res, path)
  except OSError as e:
    why = f"could not write {path} ({e.strerror or e})"
  tried = []
  for folder in rescue_folders():
    rescue = os.path.join(folder, os.path.basename(path))
    try:
      save(res, rescue)
    except OSError as e:
      tried.append(f"{rescue} ({e.strerror or e})")
      continue
    raise SaveError(f"{why}; the trained result was saved to {rescue} instead "
                    f"(move it into --out to reuse it)")
  raise SaveError(f"{why}, nor to any fallback: {'; '.join(tried)}")


def _where(res: results.SweepResult, index: tuple[int, ...]) -> str:
  parts = []
  for axis, i in zip(res.axes, index):
    v = res.coords[axis][i]
    parts.append(f"{axis}={v:g}" if isinstance(v, (float, np.floating)) else f"{axis}={v}")
  return " ".join(parts)


def report_divergence(name: str, res: Any, path: str, models: str = "models",
                      hint: str = "try a lower --lr") -> None:
  """Prints how many `models` (a result's `diverged` entries) diverged and where (a few
  examples) on stderr; raises `DivergedError`, with `hint`, when every one did (the
  result is kept: it is still a finding)."""
  diverged = np.asarray(res["diverged"], bool)
  count = int(diverged.sum())
  if count == 0:
    return
  if count == diverged.size:
    raise DivergedError(f"[{name}] every one of the {count:,} {models} diverged (NaN/inf loss "
                        f"or weights; saved to {path}): {hint}")
  examples = "; ".join(_where(res, tuple(i)) for i in np.argwhere(diverged)[:3])
  per_act = ""
  if "activation" in res.axes:
    counts = diverged.reshape(diverged.shape[0], -1).sum(1)
    per_act = " (" + ", ".join(f"{a}: {c}" for a, c in zip(res.coords["activation"], counts) if c) + ")"
  print(f"warning: [{name}] {count:,} of {diverged.size:,} {models} diverged{per_act}, "
        f"e.g. {examples}", file=sys.stderr)


class Stage(NamedTuple):
  """One kind of training on the launch path: the toy grid's (`train_or_load`), the SAE
  stage's (`sae.stage.train_or_load`).

  Attributes:
    spec: the grid (`gridspec.GridSpec`): its digest names and keys the cached file, its
      layout facts the plan.
    train: `(plan, checkpoint folder or None, seconds between checkpoints, progress) ->
      result`, whole on every process.
    save: `(result, path) -> path`, whole or not at all; `load`: `path -> result`
      (`results.ResultFileError`); `summary`: `result ->` one line for the log.
    what: what trains, for the log ("1,234 models x 300 steps").
    chunk_size: the layout asked for (`--chunk-size`; None: the device kind's rule).
    models, hint: what a result's `diverged` counts, and what to try when all did.
  """

  spec: GridSpec
  train: Callable[..., Any]
  save: Callable[[Any, str], str]
  load: Callable[[str], Any]
  summary: Callable[[Any], str]
  what: str
  chunk_size: Any = None
  models: str = "models"
  hint: str = "try a lower --lr"


def train_or_load(name: str, spec: SweepSpec, args: argparse.Namespace) -> results.SweepResult:
  """Reuses the cached result of `spec` in `--out` (unless --force), else trains and
  saves it (`run_stage`; `sweep.run` trains)."""
  from superpos_jax import sweep

  def train(plan, checkpoints, every, progress):
    return sweep.run(spec, plan=plan, progress=progress, checkpoint_dir=checkpoints,
                     checkpoint_every=every)

  return run_stage(name, Stage(spec, train, results.save, results.load, results.summary,
                               f"{spec.num_models:,} models x {spec.steps:,} steps",
                               getattr(args, "chunk_size", None)), args)


def run_stage(name: str, stage: Stage, args: argparse.Namespace) -> Any:
  """Reuses the cached result of `stage.spec` in `--out` (unless --force), else trains and
  saves it.

  Everything that can fail is checked before training: flags, the output and figure
  folders (created and written to), the coordinator, the backend and the memory budget.
  The layout is made once (`sweep.layout_for`: the device kind's rule, a given chunk
  size or `--chunk-size auto`) and handed to `stage.train`, so that what is checked is
  what runs. On several hosts every decision is taken together, after `jax.distributed`
  starts: the cache is reused only if every process has it, the budget is the smallest
  process's, and so every process compiles the same program; process 0 writes.
  A result that cannot be saved where asked is saved elsewhere (`save_or_rescue`).
  """
  import jax
  check_flags(args)
  prepare_folder(args.out, "--out")
  if not getattr(args, "no_plot", True):
    prepare_folder(figures_dir(args), "--figures")
  init_distributed(args.coordinator, args.num_processes, args.process_id,
                   getattr(args, "heartbeat_timeout", None), say=lambda m: log(args, m))
  precision = getattr(args, "matmul_precision", "float32")
  path = cache.path_for(args.out, name, args.backend, stage.spec, precision)
  res = _reuse(name, stage, args, path, precision)
  if res is not None:
    return res
  layout, checkpoints = _layout(name, stage, args, path, precision)
  every = getattr(args, "checkpoint_every", None)
  res = stage.train(layout, checkpoints, CHECKPOINT_EVERY if every is None else every,
                    None if not args.quiet else False)
  if jax.process_index() != 0:  # every process holds the whole result; one writes it
    return res
  faults.point("result.saving")
  save_or_rescue(res, path, stage.save)
  faults.point("result.saved")
  if checkpoints:  # the result is saved (or rescued, which raised): nothing to resume
    from superpos_jax import checkpoint
    checkpoint.remove(checkpoints)
  log(args, f"[{name}] {stage.summary(res)}; wrote {os.path.relpath(path)}")
  report_divergence(name, res, path, stage.models, stage.hint)
  return res


def _reuse(name: str, stage: Stage, args: argparse.Namespace, path: str, precision: str) -> Any:
  """The cached result at `path` if it is this run's and every process has it (unless
  --force); its leftover checkpoints are removed. Says why a file there is not reused."""
  res, why = (None, None) if args.force else cache.load(path, stage.spec, precision, stage.load)
  if not agreed(res is not None, "all"):
    res, why = None, why or ("another process has no cached result" if res is not None else None)
  if res is None:
    if why:
      print(f"warning: {why}; training again", file=sys.stderr)
    return None
  log(args, f"[{name}] reusing {os.path.relpath(path)} (same spec and engine code; --force to re-train)")
  if os.path.isdir(checkpoint_dir(path)):  # left by a run killed after saving its result
    from superpos_jax import checkpoint
    checkpoint.remove(checkpoint_dir(path))
  report_divergence(name, res, path, stage.models, stage.hint)
  return res


def _layout(name: str, stage: Stage, args: argparse.Namespace, path: str, precision: str):
  """`(plan, checkpoint folder or None)` of a CLI run, checked before training: the
  devices, the memory budget (agreed by every process), the layout (the one its
  checkpoints were written with, where it can run here; else `stage.chunk_size`'s or the
  device kind's) and the checkpoint folder's room."""
  from superpos_jax import plan, sweep
  spec = stage.spec
  devices = plan.choose_devices(spec, select_devices(args.backend))
  budget = max(1, int(args.max_memory * 2**30)) if args.max_memory else default_memory_budget(devices)
  if budget is not None:
    budget = agreed(budget, "min", unit=1024)
  chunk = stage.chunk_size
  checkpoints = checkpoint_dir(path) if wants_checkpoints(spec, args) else None
  layout = None
  if checkpoints and chunk in (None, "auto"):
    layout = sweep.resume_layout(spec, checkpoints, devices, max_memory=budget,
                                 precision=precision)
  if layout is None:
    if chunk == "auto":
      log(args, f"[{name}] timing candidate layouts (--chunk-size auto)")
    layout = sweep.layout_for(spec, chunk_size=chunk, max_memory=budget, devices=devices,
                              matmul_precision=precision)  # a grid too big fails here, first
  if checkpoints:
    from superpos_jax import checkpoint
    checkpoint.check_room(checkpoints, layout)  # a folder too small fails here, too
  log(args, f"[{name}] training {stage.what} "
            f"on {len(devices)} {args.backend} device(s), chunks of {layout.chunk_size}, "
            f"{precision} matmuls, memory budget {plan.gib(budget) if budget else 'none'}")
  return layout, checkpoints


def save_figures(args: argparse.Namespace, name: str, figures: dict[str, Any],
                 folder: str | None = None) -> list[str]:
  """Saves `{suffix: Figure}` as `<folder>/<name>_<suffix>.png` and lists the paths."""
  import jax
  from superpos_jax import plotting
  if jax.process_index() != 0:  # multi-host: process 0 draws
    return []
  folder = folder or figures_dir(args)
  written = []
  for suffix, fig in figures.items():
    written += plotting.save_figure(fig, os.path.join(folder, f"{name}_{suffix}"))
  for path in written:
    log(args, f"[{name}] wrote {os.path.relpath(path)}")
  return written


def save_outputs(args: argparse.Namespace, name: str, result: results.SweepResult,
                 figures: Callable[[], dict[str, Any]], custom: bool = False,
                 summarize: Callable[[str], str] | None = None) -> None:
  """Draws `figures()` and writes the machine-readable summary next to them (process 0
  only), in `cli.figures_dir(args, custom)`; with `--explore`, also `result`'s explorer page.

  `summarize(folder) -> path` writes the summary of an experiment that `summary.SECTIONS`
  does not know (e.g. one built from two results); default `summary.save(name, result)`.
  """
  import jax
  from superpos_jax import summary
  if jax.process_index() != 0:  # multi-host: process 0 draws
    return
  folder = figures_dir(args, custom)
  save_figures(args, name, figures(), folder)
  path = summarize(folder) if summarize else summary.save(name, result, folder)
  log(args, f"[{name}] wrote {os.path.relpath(path)}")
  if getattr(args, "explore", False):
    from superpos_jax.interactive import page
    path = page.write(result, os.path.join(folder, f"{name}_explorer.html"))
    log(args, f"[{name}] wrote {os.path.relpath(path)}")
