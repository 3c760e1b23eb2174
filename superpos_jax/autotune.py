"""Layouts measured, not guessed: time a few candidate layouts on the devices at hand and
keep the fastest.

    layout = autotune(spec, jax.devices())    # a plan.Plan, with how it was chosen
    result = sweep.run(spec, plan=layout)      # or sweep.run(spec, chunk_size="auto")

Each candidate (the device kind's default layout, half and double its chunk, the other
seed spanning; not those that only add padded slots, see `candidates`) is compiled and
run for a short version of the spec (the same grid, two windows of at most
`WINDOW_STEPS` steps on CPU, `ACCELERATOR_WINDOW_STEPS` on accelerators, or
`window_steps`) on the real devices; the candidate with the highest model-steps/s wins.
Constraints that a short timing cannot see stay fixed: the devices come from
`plan.choose_devices` (one host CPU device for large models, because of a leak that
shows only over long runs), and every candidate must fit the memory budget. The choice
is remembered per (device kind, device count, static spec, jax version) in
`layouts.json` under `cache_dir()`, so a rerun does not measure again.
On several hosts every process times the same candidates together and process 0's
choice is broadcast, so that all compile the same program.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Sequence

import jax

from superpos_jax import plan as plans
from superpos_jax import program
from superpos_jax.host import broadcast
from superpos_jax.spec import SpecError, SweepSpec, check_spec

# Steps of one timing window at most: two windows per candidate (the first, with the
# program's first execution, is not counted).
WINDOW_STEPS = 10
# On a GPU or TPU 20 steps of these grids take milliseconds, within timer and launch noise:
# windows there are longer (the paper n=2 grid at 10^7 model-steps/s: about 1 s a candidate).
ACCELERATOR_WINDOW_STEPS = 200


def cache_dir() -> str:
  """Where measured layouts are remembered: `$SUPERPOS_JAX_CACHE` or ~/.cache/superpos_jax."""
  return os.environ.get("SUPERPOS_JAX_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "superpos_jax")


def _layouts_path() -> str:
  return os.path.join(cache_dir(), "layouts.json")


def layout_key(spec: SweepSpec, devices: Sequence, precision: str) -> str:
  """What a remembered layout is valid for: device kind and count, the spec's static
  settings (grid shape included), the precision and the jax version."""
  text = repr((devices[0].platform, devices[0].device_kind, len(devices),
               plans.static_key(spec), precision, jax.__version__))
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _remembered(key: str) -> dict | None:
  """The entry remembered for `key`, or None: also where the file or the entry is
  damaged (a warning says so; the layout is then measured again and rewritten)."""
  try:
    with open(_layouts_path()) as f:
      table = json.load(f)
  except OSError:
    return None
  except ValueError:
    print(f"warning: {_layouts_path()} is not JSON: measuring again", file=sys.stderr)
    return None
  entry = table.get(key) if isinstance(table, dict) else None
  if entry is None:
    return None
  chunk = entry.get("chunk_size") if isinstance(entry, dict) else None
  if not (isinstance(entry, dict) and isinstance(chunk, int) and not isinstance(chunk, bool)
          and 1 <= chunk <= 2**31 - 1 and isinstance(entry.get("span_seeds"), bool)):
    print(f"warning: the layout remembered in {_layouts_path()} is damaged: measuring again",
          file=sys.stderr)
    return None
  return entry


def _remember(key: str, entry: dict) -> None:
  """Adds `entry` to layouts.json atomically; a cache that cannot be written is skipped."""
  path = _layouts_path()
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
      with open(path) as f:
        table = json.load(f)
      table = table if isinstance(table, dict) else {}
    except (OSError, ValueError):
      table = {}
    table[key] = entry
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
      json.dump(table, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
  except OSError:
    pass


def short_spec(spec: SweepSpec, window_steps: int | None = None) -> SweepSpec:
  """`spec` (same grid) for two log windows: of at most `WINDOW_STEPS` steps and its own
  log window, or of `window_steps` steps (at most its steps)."""
  window = (min(spec.log_every, WINDOW_STEPS, spec.steps) if window_steps is None
            else max(1, min(int(window_steps), spec.steps)))
  return dataclasses.replace(spec, steps=2 * window, log_every=window)


def _only_pads(layout: plans.Plan, default: plans.Plan) -> bool:
  """More chunk slots than `default` (padding: copies trained for nothing) without fewer
  chunks per device to show for it: the same work and more of it, never faster."""
  return (layout.n_chunks * layout.chunk_size > default.n_chunks * default.chunk_size
          and layout.n_chunks >= default.n_chunks)


def candidates(spec: SweepSpec, devices: Sequence, *, max_memory: int | None = None,
               precision: str = "float32") -> list[plans.Plan]:
  """The layouts to time: the device kind's default first, then half and double its
  chunk and the other seed spanning, each fitting `max_memory` (duplicates dropped, and
  those that only pad: `_only_pads`; on CPU the n=10 benchmark grid's other seed spanning
  filled 24 slots for 21 models where the default fills 22, in more chunks)."""
  default = plans.make_plan(spec, devices=devices, max_memory=max_memory, precision=precision)
  groups, q = plans.chunk_groups(spec, default.span_seeds)
  out = [default]
  tries = [dict(chunk_size=max(1, default.chunk_size // 2)),
           dict(chunk_size=min(q, 2 * default.chunk_size))]
  if spec.rng == "shared" and len(spec.seeds) > 1:
    tries.append(dict(span_seeds=not default.span_seeds))
  for kw in tries:
    try:
      layout = plans.make_plan(spec, devices=devices, max_memory=max_memory,
                               precision=precision, span_seeds=kw.get("span_seeds", default.span_seeds),
                               chunk_size=kw.get("chunk_size"))
    except SpecError:  # over the budget
      continue
    if layout not in out and not _only_pads(layout, default):
      out.append(layout)
  return out


def _label(layout: plans.Plan) -> str:
  return (f"chunk {layout.chunk_size}{' spanning seeds' if layout.span_seeds else ''} "
          f"on {len(layout.devices)} device(s)")


def measure(layout: plans.Plan, window_steps: int | None = None) -> float:
  """Model-steps/s of `layout`'s layout on `short_spec`, compile and first run excluded."""
  short = dataclasses.replace(layout, spec=short_spec(layout.spec, window_steps), progress=False)
  compiled, _ = program.compile_plan(short)
  inputs = program.program_inputs(short.spec)
  jax.block_until_ready(compiled(*inputs))
  t0 = time.perf_counter()
  jax.block_until_ready(compiled(*inputs))
  return short.spec.num_models * short.spec.steps / (time.perf_counter() - t0)


def _agree(entry: dict | None) -> dict | None:
  """Process 0's remembered layout (or None) on every process."""
  have, chunk, span = broadcast([entry is not None, entry["chunk_size"] if entry else 0,
                                  bool(entry and entry["span_seeds"])])
  if not have:
    return None
  return entry if jax.process_index() == 0 else {"chunk_size": chunk, "span_seeds": bool(span),
                                                 "from_process_0": True}


def autotune(spec: SweepSpec, devices: Sequence, *, max_memory: int | None = None,
             progress: bool = False, precision: str = "float32",
             remember: bool = True, window_steps: int | None = None) -> plans.Plan:
  """The fastest of `candidates` on `devices`, measured (or remembered from an earlier
  measurement of the same key). Its `autotuned` field records the candidates' rates.
  `window_steps`: steps of each timing window (None: `WINDOW_STEPS` on CPU,
  `ACCELERATOR_WINDOW_STEPS` elsewhere)."""
  spec = check_spec(spec)
  devices = plans.check_devices(devices)
  if window_steps is None and devices[0].platform != "cpu":
    window_steps = ACCELERATOR_WINDOW_STEPS
  layouts = candidates(spec, devices, max_memory=max_memory, precision=precision)
  key = layout_key(spec, devices, precision)
  entry = _remembered(key) if remember else None
  multi = len({d.process_index for d in devices}) > 1
  if multi:  # process 0's memory decides for every host: all time, or none does
    entry = _agree(entry)
  if entry is None:
    rates = [measure(layout, window_steps) for layout in layouts]
    best = max(range(len(layouts)), key=lambda i: rates[i])
    if multi:
      best = int(broadcast([best])[0])
    entry = {"chunk_size": layouts[best].chunk_size, "span_seeds": layouts[best].span_seeds,
             "rates": {_label(l): round(r) for l, r in zip(layouts, rates)},
             "default": _label(layouts[0]), "chosen": _label(layouts[best]),
             "measured_steps": short_spec(spec, window_steps).steps,
             "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if remember and jax.process_index() == 0:
      _remember(key, entry)
    entry = dict(entry, remembered=False)
  else:
    entry = dict(entry, remembered=True)
  try:
    chosen = plans.make_plan(spec, devices=devices, chunk_size=entry["chunk_size"],
                             span_seeds=entry["span_seeds"], max_memory=max_memory,
                             progress=progress, precision=precision)
  except SpecError:
    # Remembered under a larger memory budget and over this one: the default layout,
    # which `candidates` made within it (the same choice on every process).
    chosen = dataclasses.replace(layouts[0], progress=progress)
    entry = dict(entry, over_budget=True, chunk_size=chosen.chunk_size,
                 span_seeds=chosen.span_seeds)
  return dataclasses.replace(chosen, autotuned=entry)
