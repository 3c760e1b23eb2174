"""Benchmark: whole-grid vmapped training against looped training, and how it scales.

Three workloads (n=2,m=1 phase-diagram grid; n=10,m=5; n=200,m=20), all seven
activations, batch 1024. The same training work (same models, data, AdamW steps: every
way runs `superpos_jax.train.make_train`) is timed four ways, see benchmarks/looped.py:
  vmapped        the engine: the whole grid in one compiled call (sweep.run);
  looped-jit     one compiled training run per grid point, called point by point;
  looped-step    one compiled train step per step, a Python loop over steps and points;
  looped-switch  the engine's chunks, the activation picked per model with lax.switch;
and, with the bench extra (pip install -e '.[bench]'), the way most researchers train
these models today, the TMS notebook's PyTorch loop (benchmarks/torch_way.py):
  torch-eager    one instance-batched model per activation, einsum, eager AdamW;
  torch-compile  the same with its loss under torch.compile (skipped where it fails).
Slow ways run on a subset of points or steps and are scaled linearly (marked in the
table). Then the engine's time and memory as the grid grows (n=2 to 10^5 models, n=200
as far as it fits). Each measurement runs in a fresh process (full preset), so its peak
memory is its own (benchmarks/harness.py). Last, one jax.profiler trace of the engine per
workload says where its time goes (matmuls, elementwise ops, reductions, random numbers,
copies, dispatch) and how fast its matmuls run against a large GEMM
(benchmarks/profiler.py).

With the bench extra, occhio's ModelGrid (benchmarks/occhio_way.py) trains the ReLU
workloads n2-relu (20 x 20 densities x relative importances) and n200-relu (the study's
20 densities), between two runs of the engine on the same grid, and a check says whether
its models land in the engine's phases / D* within seed noise.

Writes <out>/benchmark.json, <out>/benchmark.md (the tables, for the README) and
<figures>/benchmark_speed.png, <figures>/benchmark_scaling.png (figures/ for the full
preset, figures/quick/ for the quick one; --name changes "benchmark").

  python benchmarks/benchmark.py                   # full preset (minutes), CPU
  python benchmarks/benchmark.py --backend gpu
  python benchmarks/benchmark.py --preset quick    # seconds: checks that it works
  python benchmarks/benchmark.py --workloads n2,n10 --skip-scaling --skip-profile
  python benchmarks/benchmark.py --workloads n2-relu,n200-relu --name benchmark_occhio \
      --skip-scaling --skip-profile --skip-layouts --skip-checkpoints --out figures
"""

import argparse
import json
import os
import sys
import time

import numpy as np

import checkpoints
import harness
import layouts
import profiler
import report as tables
from superpos_jax import activations, cli, launch, results
from superpos_jax.spec import STUDY_ACTIVATIONS, SweepSpec

NAME = "benchmark"
COMMON = dict(batch_size=1024, eval_size=1024, lrs=(1e-3,))
N2 = dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 10)), importance_kind="relative",
          importances=tuple(np.geomspace(0.1, 10.0, 10)), seeds=(0, 1))
N10 = dict(n=10, m=5, densities=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001),
           importance_kind="geometric", importances=(0.7,), seeds=(0, 1, 2))
N200 = dict(n=200, m=20, densities=tuple(20.0 ** -np.linspace(0, 1, 20)),
            importance_kind="uniform", importances=(1.0,), seeds=(0,))
# The ReLU workloads trained by occhio's ModelGrid too (one activation per grid): n = 2 on
# a 20 x 20 density x relative-importance grid as its phase-change examples (21 x 21),
# n = 200 at the study's 20 densities; 2 seeds each, for the check's seed noise.
N2_RELU = dict(N2, activations=("relu",), densities=tuple(np.geomspace(0.01, 1.0, 20)),
               importances=tuple(np.geomspace(0.1, 10.0, 20)), seeds=(0, 1))
N200_RELU = dict(N200, activations=("relu",), seeds=(0, 1))
PRESETS = {
    "full": dict(
        activations=STUDY_ACTIVATIONS,
        workloads={"n2": dict(N2, steps=2000, log_every=100),
                   "n10": dict(N10, steps=2000, log_every=100),
                   "n200": dict(N200, steps=200, log_every=50)},
        subsets={"looped-jit": dict(per_activation=2), "looped-step": dict(per_activation=1),
                 "looped-switch": dict(steps_fraction=0.1),
                 "torch-eager": dict(steps_fraction=0.25),
                 "torch-compile": dict(steps_fraction=0.25)},
        relu_workloads={"n2-relu": dict(N2_RELU, steps=2000, log_every=100),
                        "n200-relu": dict(N200_RELU, steps=500, log_every=50)},
        scaling={"n2": dict(models=(1, 10, 100, 1_000, 10_000, 100_000), steps=200),
                 "n200": dict(models=(1, 4, 16, 64, 256, 1024), steps=20)},
        isolate=True),
    "quick": dict(
        activations=("relu", "solu"),
        workloads={"n2": dict(N2, densities=(0.01, 0.1, 1.0), importances=(0.1, 10.0),
                              seeds=(0,), steps=40, log_every=20),
                   "n10": dict(N10, densities=(1.0, 0.1, 0.01), seeds=(0,), steps=40,
                               log_every=20),
                   "n200": dict(N200, densities=(1.0, 0.05), steps=10, log_every=5)},
        subsets={"looped-jit": dict(per_activation=2), "looped-step": dict(per_activation=1)},
        relu_workloads={"n2-relu": dict(N2_RELU, densities=(0.01, 0.1, 1.0),
                                        importances=(0.1, 10.0), steps=20, log_every=10)},
        scaling={"n2": dict(models=(1, 100), steps=20),
                 "n200": dict(models=(1, 4), steps=5)},
        isolate=False),
}
# The preset whose figures are the committed ones in figures/; any other writes below it.
COMMITTED = "full"
SCALING_BASE = {"n2": N2, "n200": N200}
NOTES = [
    "Same work per model-step in every way: every way trains with train.make_train (same "
    "init and data keys, batch, AdamW step, loss windows and final evaluation; max abs dW: "
    "final W against vmapped on the points both trained for all steps).",
    "RNG: vmapped draws one [n, B] uniform batch per step per seed, read by every chunk "
    "of models sharing that seed (common random numbers, each model thins it with its "
    "own density; where a seed has fewer points than a chunk, as n10's 7, chunks span "
    "seeds and each model reads its own seed's batch); looped-switch draws it once per "
    "chunk; looped-jit and looped-step once per model, as a user's loop would. Every "
    "model sees the same numbers; only the cost of drawing differs.",
    "looped-jit and looped-step run on one device, as a plain loop does; vmapped and "
    "looped-switch shard the grid over all devices (one XLA CPU device per core). "
    "looped-switch cuts its chunks per seed (at n10: 4 models, 24 slots for 21 models "
    "per activation, where vmapped spans seeds with 11), so its ratio includes that.",
    "Speed-up (run) = run time of the way / run time of vmapped, compile excluded; "
    "(compile+run) includes each way's compile time (looped ways compile once per "
    "activation).",
    "Peak RSS: the whole process (JAX runtime included, see rss_baseline_mb), one fresh "
    "process per measurement; n/a when measurements shared a process (--no-isolate).",
    "torch-eager, torch-compile: the TMS notebook's loop (benchmarks/torch_way.py), one "
    "W [instances, m, n] per activation with all its grid points as instances, "
    "torch threads: the faster of 1 and one per core on a 5-step eager trial "
    "(thread_probe_s); same data distribution, loss, AdamW and batch as the "
    "engine, but torch's random numbers (no dW check). Their compile s: torch-compile's "
    "torch.compile of the loss, forward and backward (once per activation); "
    "torch-eager's first step. Busy cores slow them far more than the engine: compare "
    "only runs taken together on a quiet machine.",
]


def workload_spec(preset: dict, name: str) -> SweepSpec:
  """The spec of workload `name`: the study's activations, or a ReLU workload's own."""
  if name in preset.get("relu_workloads", {}):
    return SweepSpec(**preset["relu_workloads"][name], **COMMON)
  return SweepSpec(**dict(preset["workloads"][name], **COMMON,
                          activations=preset["activations"]))


def all_workloads(preset: dict) -> tuple[str, ...]:
  return tuple(preset["workloads"]) + tuple(preset.get("relu_workloads", {}))


def occhio_check(spec: SweepSpec, landed: dict) -> dict:
  """occhio_way.compare of the engine's and occhio's final W (imported only when occhio ran)."""
  import occhio_way
  if "occhio" not in landed:
    return {}
  return occhio_way.compare(spec, landed["vmapped"], landed["occhio"])


def scaling_spec(name: str, models: int, steps: int) -> SweepSpec:
  """`models` relu models of workload `name`, one seed, densities spread over its range."""
  base = SCALING_BASE[name]
  lo = min(base["densities"])
  return SweepSpec(**dict(base, **COMMON, activations=("relu",),
                          densities=tuple(np.geomspace(1.0, lo, models)),
                          importances=(1.0,), seeds=(0,), steps=steps, log_every=steps))


def parse_args(argv=None) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--preset", choices=sorted(PRESETS), default="full",
                 help="full: the benchmark (minutes, default); quick: tiny grids in seconds")
  p.add_argument("--backend", choices=cli.BACKENDS, default="cpu", help="JAX backend (default cpu)")
  p.add_argument("--out", default=os.path.join(cli.REPO, "runs"),
                 help="folder for benchmark.json and benchmark.md (default: runs/)")
  p.add_argument("--figures", default=None,
                 help="folder for the figures (default: figures/ for the full preset, "
                      "figures/<preset>/ for the others)")
  p.add_argument("--name", default=NAME,
                 help=f"base name of the files it writes (default {NAME}: {NAME}.json, "
                      f"{NAME}.md, {NAME}_speed.png, ...); another keeps a partial run "
                      "(--workloads) beside the full one")
  p.add_argument("--workloads", type=cli.name_list,
                 help=f"comma-separated subset of {','.join(all_workloads(PRESETS['full']))}")
  p.add_argument("--skip-scaling", action="store_true", help="no scaling series")
  p.add_argument("--skip-layouts", action="store_true",
                 help="no default-vs-autotuned layout rows (benchmarks/layouts.py)")
  p.add_argument("--skip-checkpoints", action="store_true",
                 help="no checkpoint cost rows (benchmarks/checkpoints.py)")
  p.add_argument("--skip-profile", action="store_true",
                 help="no jax.profiler breakdown of the engine's time per workload")
  p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                 help="one fresh process per measurement, so peak memory is its own "
                      "(default: on for full, off for quick)")
  p.add_argument("--quiet", action="store_true", help="print only the table")
  return p.parse_args(argv)


def figures_dir(args: argparse.Namespace) -> str:
  """`--figures`, else figures/ for the committed preset and figures/<preset>/ otherwise,
  so that a quick check never replaces the committed figures."""
  if args.figures is not None:
    return args.figures
  sub = () if args.preset == COMMITTED else (args.preset,)
  return os.path.join(cli.REPO, "figures", *sub)


def measure_all(args, preset: dict, names: tuple, devices: list, isolate: bool) -> dict:
  """The report's workloads, progress overhead, profile and scaling sections."""
  log = lambda msg: cli.log(args, msg)
  out = {"workloads": {}, "scaling": {}}
  relu = preset.get("relu_workloads", {})
  for name in names:
    spec = workload_spec(preset, name)
    log(f"[{NAME}] {name}: {spec.num_models:,} models x {spec.steps:,} steps, batch "
        f"{spec.batch_size}, {len(devices)} {args.backend} device(s)")
    # occhio on the ReLU workloads, between two runs of the engine (load changes show).
    kw = (dict(ways=("vmapped",) + harness.OCCHIO_WAYS, bracket=True, check=occhio_check)
          if name in relu else {})
    out["workloads"][name] = {
        "n": spec.n, "m": spec.m, "spec": spec.to_dict(),
        **harness.benchmark_workload(spec, preset["subsets"], backend=args.backend,
                                     isolate=isolate, log=log, **kw)}
  names = tuple(name for name in names if name not in relu)  # the rest: the study's grids
  if "n2" in names:
    log(f"[{NAME}] progress display overhead (n2)")
    out["progress_overhead"] = harness.progress_overhead(workload_spec(preset, "n2"), devices)
  if not args.skip_layouts:
    out["layouts"] = layouts.measure(preset, names, devices, log=log)
  if not args.skip_checkpoints:
    out["checkpoints"] = checkpoints.measure(preset, names, log=log)
  if not args.skip_profile:
    out["profile"] = {}
    for name in names:
      log(f"[{NAME}] profile {name} (jax.profiler)")
      out["profile"][name] = profiler.profile(workload_spec(preset, name), devices)
  if not args.skip_scaling:
    for name, sizes in preset["scaling"].items():
      log(f"[{NAME}] scaling {name}")
      specs = [scaling_spec(name, k, sizes["steps"]) for k in sizes["models"]]
      out["scaling"][name] = {
          "n": specs[0].n, "m": specs[0].m, "activation": "relu",
          "batch_size": specs[0].batch_size,
          "rows": harness.scaling_series(specs, backend=args.backend, isolate=isolate, log=log)}
  return out


def skipped_notes(workloads: dict) -> list[str]:
  """One note per reason that ways were skipped, naming the ways and workloads."""
  by_reason: dict[str, tuple[dict, dict]] = {}  # reason -> (ways, workloads), ordered sets
  for name, w in workloads.items():
    for way, reason in w["skipped"].items():
      ways, names = by_reason.setdefault(reason, ({}, {}))
      ways[way] = names[name] = None
  return [f"Skipped {', '.join(ways)} ({', '.join(names)}): {reason}."
          for reason, (ways, names) in by_reason.items()]


def _write_text(path: str, text: str) -> None:
  results.write_atomically(path, lambda f: f.write(text.encode()))


def write_report(args: argparse.Namespace, report: dict) -> None:
  """benchmark.json and benchmark.md to --out, the figures, the table to stdout."""
  _write_text(os.path.join(args.out, f"{args.name}.json"), json.dumps(report, indent=1))
  _write_text(os.path.join(args.out, f"{args.name}.md"),
              tables.format_report(report, markdown=True))
  figures = {"speed": tables.figure_speed(report)} if report["workloads"] else {}
  if report["scaling"]:
    figures["scaling"] = tables.figure_scaling(report)
  launch.save_figures(args, args.name, figures, folder=figures_dir(args))
  print(tables.format_report(report))
  if "progress_overhead" in report:
    po = report["progress_overhead"]
    print(f"progress display: {po['run_s_on']:.3f} s on vs {po['run_s_off']:.3f} s off "
          f"({po['overhead_pct']:+.1f}%)")


def main(argv=None) -> None:
  args = parse_args(argv)
  cli.configure_host(args.backend, compile_cache=False)  # first: XLA reads its flags when the backend starts; compile times measured, not loaded
  preset = PRESETS[args.preset]
  names = args.workloads or all_workloads(preset)
  unknown = [w for w in names if w not in all_workloads(preset)]
  if unknown:
    raise cli.UserError(f"unknown workload(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(all_workloads(preset))}")
  isolate = preset["isolate"] if args.isolate is None else args.isolate
  devices = launch.select_devices(args.backend)
  t0 = time.perf_counter()
  report = {"preset": args.preset, "isolated": isolate,
            "machine": harness.machine_info(args.backend), "notes": NOTES}
  try:
    report.update(measure_all(args, preset, names, devices, isolate))
  except harness.JobError as e:
    raise cli.UserError(str(e)) from None
  report["notes"] = NOTES + skipped_notes(report["workloads"])
  if any("occhio" in w["ways"] for w in report["workloads"].values()):
    import occhio_way
    report["notes"] += occhio_way.notes()
  report["elapsed_s"] = time.perf_counter() - t0
  report["machine"]["load_average_end"] = harness.machine_info(args.backend)[
      "load_average_1_5_15min"]
  write_report(args, report)


if __name__ == "__main__":
  sys.exit(cli.run(main))
