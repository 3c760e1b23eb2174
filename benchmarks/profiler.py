"""Where the engine's time goes: a jax.profiler trace of a sweep, summed by kind of op.

    report = profiler.profile(spec)   # one warm run traced, ops grouped by category
    head, rows = profiler.profile_table({"n2": report})

The trace (perfetto JSON written by `jax.profiler.trace`) has one event per executed HLO
instruction, named by `hlo_op`. The compiled program's HLO text says what each one is:

  matmul          a dot, or a fusion around one (the forward and backward products);
  random numbers  anything inside the threefry draw (`jax.random.uniform`);
  reduction       a fusion around a reduce that is not a dot (sums over the batch);
  elementwise     the other fusions: data thinning, activation and its derivative, AdamW;
  copies          copy, dynamic-update-slice, bitcasts: moving data, no arithmetic;
  between ops     devices x wall time minus the ops' time: dispatching each op (a few
                  microseconds), waiting for the other device, host callbacks.

Loops (`while`) are containers: their time is their body's ops, counted there. The
matmul rate is the step's matmul FLOPs (5 products of `2*m*n*B` per model-step: two
forward, three backward) over the time of the matmul ops, per device, so it can be set
against the rate of one large GEMM on the same device (`gemm_rate`).

(Not named profile.py: with benchmarks/ first on sys.path it would shadow the standard
library's `profile`.)
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import gzip
import json
import re
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from superpos_jax import sweep
from superpos_jax.plan import make_plan
from superpos_jax.spec import SweepSpec

CATEGORIES = ("matmul", "elementwise", "reduction", "random numbers", "copies", "between ops")
_CONTAINERS = ("while", "conditional", "call")
_COPIES = ("copy", "dynamic-update-slice", "dynamic-slice", "bitcast", "tuple",
           "get-tuple-element", "slice", "concatenate", "transpose", "broadcast", "reshape",
           "pad", "gather", "scatter", "iota", "constant", "parameter", "all-reduce",
           "all-gather", "copy-start", "copy-done")
_RNG_MARKERS = ("_uniform", "threefry", "random_bits", "random_wrap")

_COMP = re.compile(r"^(?:ENTRY )?%([\w.\-]+) .*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = .*?\s([\w\-]+)\(")
_CALLS = re.compile(r"(?:calls|body|condition|to_apply|true_computation|false_computation)"
                    r"=%([\w.\-]+)")
_OPNAME = re.compile(r'op_name="([^"]*)"')


def op_categories(hlo_text: str) -> dict[str, str]:
  """Category (see CATEGORIES, or "loop") of every instruction of an optimised HLO module."""
  comps: dict[str, list[tuple[str, str, list[str], str]]] = {}
  current = None
  for line in hlo_text.splitlines():
    m = _COMP.match(line)
    if m:
      current = comps.setdefault(m.group(1), [])
      continue
    m = _INSTR.match(line)
    if m and current is not None:
      op_name = _OPNAME.search(line)
      current.append((m.group(1), m.group(2), _CALLS.findall(line),
                      op_name.group(1) if op_name else ""))

  def contains(comp: str, opcodes: tuple[str, ...], seen=None) -> bool:
    seen = set() if seen is None else seen
    if comp in seen:
      return False
    seen.add(comp)
    return any(op in opcodes or any(contains(c, opcodes, seen) for c in called)
               for _, op, called, _ in comps.get(comp, ()))

  # Computations run by a random-number loop (and what they call) are "random numbers".
  rng_comps: set[str] = set()
  todo = [c for instrs in comps.values() for _, op, called, op_name in instrs
          if op in _CONTAINERS and any(k in op_name for k in _RNG_MARKERS) for c in called]
  while todo:
    c = todo.pop()
    if c not in rng_comps:
      rng_comps.add(c)
      todo.extend(x for _, _, called, _ in comps.get(c, ()) for x in called)

  out = {}
  for comp, instrs in comps.items():
    for name, op, called, op_name in instrs:
      if op in _CONTAINERS:
        out[name] = "loop"
      elif comp in rng_comps or any(k in op_name for k in _RNG_MARKERS):
        out[name] = "random numbers"
      elif op in ("dot", "convolution") or (
          op == "fusion" and any(contains(c, ("dot",)) for c in called)):
        out[name] = "matmul"
      elif op == "reduce" or (op == "fusion" and any(contains(c, ("reduce",)) for c in called)):
        out[name] = "reduction"
      elif op in _COPIES:
        out[name] = "copies"
      else:
        out[name] = "elementwise"
  return out


def _trace_op_seconds(trace_dir: str, module: str) -> tuple[dict[str, float], dict[str, int]]:
  """Seconds and call counts per HLO op of `module` in the perfetto trace under trace_dir."""
  files = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)
  if not files:
    raise RuntimeError(f"jax.profiler wrote no perfetto trace under {trace_dir}")
  with gzip.open(files[0]) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  secs: dict[str, float] = collections.Counter()
  calls: dict[str, int] = collections.Counter()
  for e in events:
    args = e.get("args") or {}
    if e.get("ph") == "X" and args.get("hlo_module") == module and "hlo_op" in args:
      secs[args["hlo_op"]] += e.get("dur", 0.0) * 1e-6
      calls[args["hlo_op"]] += 1
  return dict(secs), dict(calls)


def gemm_rate(devices=None, size: int = 1024, reps: int = 20) -> float:
  """GFLOP/s of one device on a large `[size, size]` float32 matmul, all devices at once."""
  devices = list(devices or jax.devices())
  mesh = jax.sharding.Mesh(np.asarray(devices), ("d",))
  spec = jax.sharding.PartitionSpec("d")
  matmul = jax.jit(jax.shard_map(lambda a, b: a @ b, mesh=mesh, in_specs=(spec, spec),
                                 out_specs=spec))
  a = jax.random.normal(jax.random.key(0), (len(devices) * size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (len(devices) * size, size), jnp.float32)
  jax.block_until_ready(matmul(a, b))
  t0 = time.perf_counter()
  for _ in range(reps):
    out = matmul(a, b)
  jax.block_until_ready(out)
  return 2 * size**3 * reps / (time.perf_counter() - t0) / 1e9


# Chunk-steps traced: the profiler keeps a bounded number of events (a 1,400-model n=2 run
# of 2,000 steps lost most of its ops), so the traced run is cut to about this many.
TRACED_CHUNK_STEPS = 2000
# The jitted function's name in the trace: `jit_` + the name of sweep's program function.
_MODULE = "jit_train_grid"


def _timed_run(compiled, inputs) -> float:
  """Seconds of one call of `compiled`, results on the host (as `sweep.run` times it)."""
  t0 = time.perf_counter()
  jax.tree.map(np.asarray, jax.block_until_ready(compiled(*inputs)))
  return time.perf_counter() - t0


def _by_category(secs: dict[str, float], calls: dict[str, int], categories: dict[str, str],
                 busy_s: float) -> dict[str, dict[str, float]]:
  """{category: seconds, calls, share of `busy_s`}; "between ops" is the time no op ran."""
  by_cat = {c: {"seconds": 0.0, "calls": 0} for c in CATEGORIES}
  for op, s in secs.items():
    cat = categories.get(op, "elementwise")
    if cat != "loop":
      by_cat[cat]["seconds"] += s
      by_cat[cat]["calls"] += calls[op]
  op_s = sum(v["seconds"] for v in by_cat.values())
  by_cat["between ops"]["seconds"] = max(busy_s, op_s) - op_s
  for v in by_cat.values():
    v["share"] = v["seconds"] / max(busy_s, op_s)
  return by_cat


def _trace(spec: SweepSpec, devices: list) -> tuple:
  """Compiles `spec`'s engine program, runs it warm, untraced and traced.

  Returns:
    (plan, HLO categories, untraced run seconds, traced run seconds, op seconds, calls).
  """
  plan = make_plan(spec, devices=devices)
  compiled, _ = sweep.compile_plan(plan)
  inputs = sweep.program_inputs(spec)
  _timed_run(compiled, inputs)  # warm: thread pools, page faults
  run_s = _timed_run(compiled, inputs)
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      traced_s = _timed_run(compiled, inputs)
    secs, calls = _trace_op_seconds(d, _MODULE)
  return plan, op_categories(compiled.as_text()), run_s, traced_s, secs, calls


def profile(spec: SweepSpec, devices=None) -> dict[str, Any]:
  """Traces one warm run of `spec`'s grid on the engine and sums its op time by category.

  Args:
    spec: the workload; the grid is its own, the steps are cut to about
      TRACED_CHUNK_STEPS chunk-steps in all (the trace must hold every op).
    devices: devices to run on; None = the default backend's.

  Returns:
    run_s and model_steps_per_s (untraced), traced_run_s, chunk_size, devices, op_s (op
    time summed over devices), coverage (share of devices x wall time the traced ops
    account for), categories {name: {"seconds", "share" of devices x traced wall time,
    "calls"}}, top_ops (the 12 slowest ops), matmul_gflops_per_device, step_gflop (per
    model-step), gemm_gflops_per_device, and matmul_bound_model_steps_per_s (throughput
    if every other op were free and matmuls ran at the GEMM rate).
  """
  devices = list(devices or jax.devices())
  chunks = len(spec.activations) * make_plan(spec, devices=devices).n_chunks
  steps = max(1, min(spec.steps, TRACED_CHUNK_STEPS // chunks))
  spec = dataclasses.replace(spec, steps=steps, log_every=steps)
  plan, categories, run_s, traced_s, secs, calls = _trace(spec, devices)
  by_cat = _by_category(secs, calls, categories, len(devices) * traced_s)
  op_s = sum(v["seconds"] for c, v in by_cat.items() if c != "between ops")
  model_steps = spec.num_models * spec.steps
  step_flop = 5 * 2 * spec.m * spec.n * spec.batch_size
  mm_s = by_cat["matmul"]["seconds"]
  gemm = gemm_rate(devices)
  top = sorted(((s, op) for op, s in secs.items() if categories.get(op) != "loop"), reverse=True)
  return {
      "workload": {"n": spec.n, "m": spec.m, "activations": list(spec.activations),
                   "models": spec.num_models, "steps": spec.steps,
                   "batch_size": spec.batch_size},
      "run_s": run_s, "model_steps_per_s": model_steps / run_s, "traced_run_s": traced_s,
      "chunk_size": plan.chunk_size, "devices": len(devices),
      "op_s": op_s, "coverage": op_s / max(op_s, len(devices) * traced_s),
      "categories": by_cat,
      "top_ops": [{"op": op, "category": categories.get(op, "elementwise"), "seconds": s,
                   "calls": calls[op]} for s, op in top[:12]],
      "step_gflop": step_flop / 1e9,
      # FLOPs / op time, both summed over devices: the rate of one device.
      "matmul_gflops_per_device": model_steps * step_flop / mm_s / 1e9 if mm_s else None,
      "gemm_gflops_per_device": gemm,
      "matmul_bound_model_steps_per_s": gemm * 1e9 * len(devices) / step_flop,
  }


def profile_table(reports: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
  """Header and rows, one per workload: throughput, % of time per category, matmul rates."""
  head = ["workload", "chunk", "model-steps/s", *[f"{c} %" for c in CATEGORIES],
          "matmul GFLOP/s/device", "GEMM GFLOP/s/device", "matmul-bound model-steps/s"]
  rows = []
  for name, r in reports.items():
    mm = r["matmul_gflops_per_device"]
    w = r["workload"]
    rows.append([f"{name} (n={w['n']}, m={w['m']})", str(r["chunk_size"]),
                 f"{r['model_steps_per_s']:,.0f}",
                 *[f"{100 * r['categories'][c]['share']:.0f}" for c in CATEGORIES],
                 "-" if mm is None else f"{mm:.1f}", f"{r['gemm_gflops_per_device']:.0f}",
                 f"{r['matmul_bound_model_steps_per_s']:,.0f}"])
  return head, rows


# Footnotes of `profile_table` (the benchmark prints them under it).
NOTES = [
    "matmul GFLOP/s/device: the 5 products of 2*m*n*B FLOPs per model-step (2 forward, 3 "
    "backward) over the time of the matmul ops; GEMM: one 1024x1024 float32 matmul per "
    "device, all devices at once.",
    "matmul-bound model-steps/s: the throughput if every other op were free and the "
    "matmuls ran at the GEMM rate, an upper bound for this model and batch.",
    "between ops: op dispatch (a few microseconds per op), waiting for the other device, "
    "host callbacks.",
]
