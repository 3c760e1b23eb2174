"""From a spec to its result file, and on to figures: the devices, the coordinator, the
memory budget, train or reuse, save (or rescue), report divergence, draw.

Everything that can fail is checked before training (`train_or_load`); a finished
training is never thrown away (`save_or_rescue`).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

from superpos_jax import cache, results
from superpos_jax.cli import (BACKENDS, DivergedError, SaveError, UserError, check_flags,
                              figures_dir, log)
from superpos_jax.spec import SweepSpec


# How long a non-zero process tries to reach the coordinator before giving up: process 0
# needs a few seconds to start JAX and listen.
COORDINATOR_TIMEOUT_S = 10.0


# How to install JAX for each accelerator backend (the extras of pyproject.toml).
INSTALL_HINTS = {"gpu": "pip install 'superpos_jax[cuda]' (NVIDIA GPU, CUDA 12)",
                 "tpu": "pip install 'superpos_jax[tpu]'"}


def select_devices(backend: str) -> list:
  """Devices of `backend`, or a one-line UserError naming the available backends."""
  import jax
  try:
    return jax.devices(backend)
  except RuntimeError:
    available = []
    for b in BACKENDS:
      try:
        jax.devices(b)
        available.append(b)
      except RuntimeError:
        pass
    hint = f"; to install JAX for it: {INSTALL_HINTS[backend]}" if backend in INSTALL_HINTS else ""
    raise UserError(f"JAX has no {backend!r} backend on this machine "
                    f"(available: {', '.join(available) or 'none'}){hint}") from None


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


def probe_coordinator(address: str, process_id: int, timeout: float | None = None) -> None:
  """Fails in seconds, with one line, where `jax.distributed.initialize` would hang for
  minutes and then abort: process 0 must be able to listen on the port, every other
  process must reach it within `timeout` seconds (default `COORDINATOR_TIMEOUT_S`)."""
  timeout = COORDINATOR_TIMEOUT_S if timeout is None else timeout
  host, _, port = address.rpartition(":")
  host, port = host.strip("[]"), int(port)
  try:
    socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
  except OSError as e:
    raise UserError(f"--coordinator {address}: cannot resolve {host!r} ({e.strerror or e})") from None
  if process_id == 0:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
      s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      try:
        s.bind(("", port))
      except OSError as e:
        raise UserError(f"--coordinator {address}: process 0 cannot listen on port {port} "
                        f"({e.strerror or e})") from None
    return
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, port), timeout=max(0.1, min(2.0, timeout))):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise UserError(f"--coordinator {address}: not reachable within {timeout:g} s "
                        f"({e.strerror or e}); start process 0 first, or check the "
                        f"address and firewall") from None
      time.sleep(0.25)


def init_distributed(args: argparse.Namespace) -> None:
  """Joins JAX's multi-host runtime when --coordinator is given (one process per host)."""
  if not args.coordinator:
    return
  probe_coordinator(args.coordinator, args.process_id)  # flags: checked by train_or_load
  if args.process_id == 0:
    log(args, f"waiting for {args.num_processes - 1} more process(es) to join at {args.coordinator}")
  import jax
  extra = {}
  if getattr(args, "heartbeat_timeout", None):
    extra["heartbeat_timeout_seconds"] = args.heartbeat_timeout
  jax.distributed.initialize(coordinator_address=args.coordinator,
                             num_processes=args.num_processes, process_id=args.process_id,
                             **extra)


def _host_memory_budget() -> int:
  try:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
  except (ValueError, OSError, AttributeError):
    return 8 * 2**30


def default_memory_budget(devices: list) -> int | None:
  """Bytes a run may use: on an accelerator one device's own limit, the smallest of
  `Device.memory_stats()["bytes_limit"]` (what XLA's allocator may hand out; the plan
  compares one device's share with it); on CPU half the host's RAM. An accelerator that
  reports no limit gets no budget (None, with a warning) rather than a guess from the
  host's RAM, which says nothing about the device's memory."""
  accelerators = [d for d in devices if d.platform != "cpu"]
  if not accelerators:
    return _host_memory_budget()
  limits = []
  for d in accelerators:
    try:
      stats = d.memory_stats() or {}
    except Exception:  # not implemented on every backend and version
      stats = {}
    if stats.get("bytes_limit"):
      limits.append(int(stats["bytes_limit"]))
  if len(limits) < len(accelerators):
    print(f"warning: {accelerators[0].platform} devices report no memory limit: the grid is "
          f"laid out without a budget (give one with --max-memory GiB)", file=sys.stderr)
    return None
  return min(limits)


def _agreed(value: int, how: str) -> int:
  """`value` agreed by every process of a multi-host run: the smallest ("min"; a byte
  count, exchanged in KiB because JAX's collectives carry int32) or whether all are true
  ("all"); as is in a single process."""
  import jax
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils
  unit = 1024 if how == "min" else 1
  mine = np.asarray([min(value // unit, 2**31 - 1)], np.int32)
  values = np.asarray(multihost_utils.process_allgather(mine)).astype(np.int64)
  return int(values.min()) * unit if how == "min" else int(values.all())


# Without --checkpoint-every, runs of less work than this (model-steps x (n + m)) train in
# one call, unstaged and never checkpointed: seconds on a laptop CPU (the quick presets do
# 10^5 to 5 x 10^5), where a checkpoint could not save anything worth its stages' extra
# compiles. The others checkpoint at most every CHECKPOINT_EVERY seconds.
CHECKPOINT_MIN_WORK = 2 * 10**6
CHECKPOINT_EVERY = 300.0


def wants_checkpoints(spec: SweepSpec, args: argparse.Namespace) -> bool:
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


def save_or_rescue(res: results.SweepResult, path: str) -> str:
  """Saves `res` to `path`; if that fails, to the first folder of `rescue_folders` that
  works, then raises `SaveError` naming both (a finished training is never discarded)."""
  try:
    return results.save(res, path)
  except OSError as e:
    why = f"could not write {path} ({e.strerror or e})"
  tried = []
  for folder in rescue_folders():
    rescue = os.path.join(folder, os.path.basename(path))
    try:
      results.save(res, rescue)
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


def report_divergence(name: str, res: results.SweepResult, path: str) -> None:
  """Prints how many models diverged and where (a few examples) on stderr; raises
  `DivergedError` when every model did (the result is kept: it is still a finding)."""
  diverged = np.asarray(res["diverged"], bool)
  count = int(diverged.sum())
  if count == 0:
    return
  if count == diverged.size:
    raise DivergedError(f"[{name}] every one of the {count:,} models diverged (NaN/inf loss "
                        f"or weights; saved to {path}): try a lower --lr")
  examples = "; ".join(_where(res, tuple(i)) for i in np.argwhere(diverged)[:3])
  per_act = ""
  if "activation" in res.axes:
    counts = diverged.reshape(diverged.shape[0], -1).sum(1)
    per_act = " (" + ", ".join(f"{a}: {c}" for a, c in zip(res.coords["activation"], counts) if c) + ")"
  print(f"warning: [{name}] {count:,} of {diverged.size:,} models diverged{per_act}, "
        f"e.g. {examples}", file=sys.stderr)


def train_or_load(name: str, spec: SweepSpec, args: argparse.Namespace) -> results.SweepResult:
  """Reuses the cached result of `spec` in `--out` (unless --force), else trains and saves it.

  Everything that can fail is checked before training: flags, the output and figure
  folders (created and written to), the coordinator, the backend and the memory budget.
  The layout is made once (`sweep.layout_for`: the device kind's rule, a given chunk
  size or `--chunk-size auto`) and handed to `sweep.run`, so that what is checked is what
  runs. On several hosts every decision is taken together, after `jax.distributed`
  starts: the cache is reused only if every process has it, the budget is the smallest
  process's, and so every process compiles the same program.
  A result that cannot be saved where asked is saved elsewhere (`save_or_rescue`).
  """
  import jax
  from superpos_jax import sweep
  check_flags(args)
  prepare_folder(args.out, "--out")
  if not getattr(args, "no_plot", True):
    prepare_folder(figures_dir(args), "--figures")
  init_distributed(args)
  precision = getattr(args, "matmul_precision", "float32")
  path = cache.path_for(args.out, name, args.backend, spec, precision)
  res, why = (None, None) if args.force else cache.load(path, spec, precision)
  if not _agreed(res is not None, "all"):
    res, why = None, why or ("another process has no cached result" if res is not None else None)
  if res is not None:
    log(args, f"[{name}] reusing {os.path.relpath(path)} (same spec and engine code; --force to re-train)")
    report_divergence(name, res, path)
    return res
  if why:
    print(f"warning: {why}; training again", file=sys.stderr)
  from superpos_jax import plan
  devices = plan.choose_devices(spec, select_devices(args.backend))
  budget = max(1, int(args.max_memory * 2**30)) if args.max_memory else default_memory_budget(devices)
  if budget is not None:
    budget = _agreed(budget, "min")
  progress = None if not args.quiet else False
  chunk = getattr(args, "chunk_size", None)
  if chunk == "auto":
    log(args, f"[{name}] timing candidate layouts (--chunk-size auto)")
  layout = sweep.layout_for(spec, chunk_size=chunk, max_memory=budget, devices=devices,
                            matmul_precision=precision)  # a grid too big fails here, first
  checkpoints = checkpoint_dir(path) if wants_checkpoints(spec, args) else None
  if checkpoints:
    from superpos_jax import checkpoint
    checkpoint.check_room(checkpoints, layout)  # a folder too small fails here, too
  log(args, f"[{name}] training {spec.num_models:,} models x {spec.steps:,} steps "
            f"on {len(devices)} {args.backend} device(s), chunks of {layout.chunk_size}, "
            f"{precision} matmuls, memory budget {plan._gib(budget) if budget else 'none'}")
  res = sweep.run(spec, plan=layout, progress=progress, checkpoint_dir=checkpoints,
                  checkpoint_every=(CHECKPOINT_EVERY if getattr(args, "checkpoint_every", None) is None
                                    else args.checkpoint_every))
  if jax.process_index() != 0:  # every process holds the whole result; one writes it
    return res
  save_or_rescue(res, path)
  if checkpoints:  # the result is saved (or rescued, which raised): nothing to resume
    from superpos_jax import checkpoint
    checkpoint.remove(checkpoints)
  log(args, f"[{name}] {results.summary(res)}; wrote {os.path.relpath(path)}")
  report_divergence(name, res, path)
  return res


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
