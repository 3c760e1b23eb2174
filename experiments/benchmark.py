"""Benchmark: whole-grid vmapped training against looped training, and how it scales.

Three workloads (n=2,m=1 phase-diagram grid; n=10,m=5; n=200,m=20), all seven
activations, batch 1024. The same training work (same models, data, AdamW steps) is timed
four ways, see superpos_jax/baselines.py:
  vmapped        the engine: the whole grid in one compiled call (sweep.run);
  looped-jit     one compiled lax.scan training run per grid point, called point by point;
  looped-step    one compiled train_step per step, a Python loop over steps and points;
  looped-switch  all points vmapped, the activation picked per point with lax.switch.
Slow ways run on a subset of points or steps and are scaled linearly (marked in the
table). Then the engine's time and memory as the grid grows (n=2 to 10^5 models, n=200
as far as it fits). Each measurement runs in a fresh process (full preset), so its peak
memory is its own. Last, one jax.profiler trace of the engine per workload says where its
time goes (matmuls, elementwise ops, reductions, random numbers, copies, dispatch) and
how fast its matmuls run against a large GEMM (superpos_jax/profiling.py).

Writes <out>/benchmark.json, <out>/benchmark.md (the tables, for the README) and
<figures>/benchmark_speed.png, <figures>/benchmark_scaling.png.

  python experiments/benchmark.py                   # full preset (minutes), CPU
  python experiments/benchmark.py --backend gpu
  python experiments/benchmark.py --preset quick    # seconds: checks that it works
  python experiments/benchmark.py --workloads n2,n10 --skip-scaling --skip-profile
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from superpos_jax import cli  # noqa: E402  (cli first: it sets XLA_FLAGS before jax loads)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from superpos_jax import activations, baselines, profiling, results, sweep  # noqa: E402

NAME = "benchmark"
COMMON = dict(batch_size=1024, eval_size=1024, lrs=(1e-3,))
N2 = dict(n=2, m=1, densities=tuple(np.geomspace(0.01, 1.0, 10)), importance_kind="relative",
          importances=tuple(np.geomspace(0.1, 10.0, 10)), seeds=(0, 1))
N10 = dict(n=10, m=5, densities=(1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001),
           importance_kind="geometric", importances=(0.7,), seeds=(0, 1, 2))
N200 = dict(n=200, m=20, densities=tuple(20.0 ** -np.linspace(0, 1, 20)),
            importance_kind="uniform", importances=(1.0,), seeds=(0,))
PRESETS = {
    "full": dict(
        activations=activations.STUDY,
        workloads={"n2": dict(N2, steps=2000, log_every=100),
                   "n10": dict(N10, steps=2000, log_every=100),
                   "n200": dict(N200, steps=200, log_every=50)},
        subsets={"looped-jit": dict(per_activation=2), "looped-step": dict(per_activation=1),
                 "looped-switch": dict(steps_fraction=0.1)},
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
        scaling={"n2": dict(models=(1, 100), steps=20),
                 "n200": dict(models=(1, 4), steps=5)},
        isolate=False),
}
SCALING_BASE = {"n2": N2, "n200": N200}
NOTES = [
    "Same work per model-step in every way: same init and data keys, batch, AdamW step, "
    "loss windows and final evaluation (max abs dW: final W against vmapped on the points "
    "both trained for all steps).",
    "RNG: vmapped and looped-switch draw one [n, B] uniform batch per step per chunk of "
    "models sharing a seed (common random numbers, each model thins it with its own "
    "density); looped-jit and looped-step draw one per model per step, as a user's loop "
    "would. Every model sees the same numbers; only the cost of drawing differs.",
    "looped-jit and looped-step run on one device, as a plain loop does; vmapped and "
    "looped-switch shard the grid over all devices (one XLA CPU device per core).",
    "Speed-up (run) = run time of the way / run time of vmapped, compile excluded; "
    "(compile+run) includes each way's compile time (looped ways compile once per "
    "activation).",
    "Peak RSS: the whole process (JAX runtime included, see rss_baseline_mb), one fresh "
    "process per measurement; n/a when measurements shared a process (--no-isolate).",
]


def workload_spec(preset, name):
  return sweep.SweepSpec(**dict(preset["workloads"][name], **COMMON,
                                activations=preset["activations"]))


def scaling_spec(name, models, steps):
  """`models` relu models of workload `name`, one seed, densities spread over its range."""
  base = SCALING_BASE[name]
  lo = min(base["densities"])
  return sweep.SweepSpec(**dict(base, **COMMON, activations=("relu",),
                                densities=tuple(np.geomspace(1.0, lo, models)),
                                importances=(1.0,), seeds=(0,), steps=steps, log_every=steps))


def _bar_colors():
  return dict(zip(baselines.WAYS, ("#4c72b0", "#dd8452", "#c44e52", "#8172b3")))


def figure_speed(report):
  """Grouped bars of model-steps/s per workload and way (log y), speed-ups written on top."""
  from matplotlib.figure import Figure
  from matplotlib.patches import Patch
  fig = Figure(figsize=(8.5, 4.8), layout="constrained")
  ax = fig.add_subplot()
  names = list(report["workloads"])
  width = 0.8 / len(baselines.WAYS)
  for j, way in enumerate(baselines.WAYS):
    for i, name in enumerate(names):
      r = report["workloads"][name]["ways"][way]
      x = i + (j - (len(baselines.WAYS) - 1) / 2) * width
      ax.bar(x, r["model_steps_per_s"], width * 0.95, color=_bar_colors()[way],
             hatch="//" if r["scaled_from"] else None, edgecolor="white",
             label=way if i == 0 else None)
      if way != "vmapped":
        speedup = r["speedup_vs_vmapped"]
        ax.text(x, r["model_steps_per_s"] * 1.15, f"{speedup:.0f}x" if speedup >= 10 else
                f"{speedup:.2g}x",
                ha="center", va="bottom", fontsize=8)
  labels = [f"n={report['workloads'][k]['n']}, m={report['workloads'][k]['m']}\n"
            f"{report['workloads'][k]['ways']['vmapped']['models']:,} models" for k in names]
  ax.set_xticks(range(len(names)), labels)
  ax.set_yscale("log")
  ax.set_ylabel("model-steps per second (higher is better)")
  ax.set_ylim(top=ax.get_ylim()[1] * 3)
  handles, texts = ax.get_legend_handles_labels()
  handles.append(Patch(facecolor="white", edgecolor="grey", hatch="//"))
  texts.append("measured on a subset, scaled")
  ax.legend(handles, texts, fontsize=8, ncols=3, loc="upper right")
  mach = report["machine"]
  ax.set_title("Training throughput, batch 1024: numbers on bars = how many times faster "
               "vmapped runs", fontsize=10)
  fig.suptitle(f"{mach['cpu']}, {mach['cores']} cores, {mach['backend']} x"
               f"{mach['device_count']}, jax {mach['jax']}, {mach['date'][:10]}", fontsize=8)
  return fig


def figure_scaling(report):
  """Log-log throughput and peak memory of the engine against the number of models."""
  from matplotlib.figure import Figure
  fig = Figure(figsize=(10, 4.2), layout="constrained")
  speed, memory = fig.subplots(1, 2)
  for name, series in report["scaling"].items():
    rows = [r for r in series["rows"] if "error" not in r]
    if not rows:
      continue
    models = [r["models"] for r in rows]
    label = f"n={series['n']}, m={series['m']}, {rows[0]['steps']} steps"
    lines = speed.plot(models, [r["model_steps_per_s"] for r in rows], "o-", label=label)
    if rows[0]["peak_rss_mb"] is not None:
      memory.plot(models, [r["peak_rss_mb"] for r in rows], "o-", color=lines[0].get_color(),
                  label=label)
      memory.axhline(rows[0]["rss_baseline_mb"], color="grey", ls=":", lw=1)
  speed.set(xscale="log", yscale="log", xlabel="models in the grid",
            ylabel="model-steps per second", title="Throughput")
  memory.set(xscale="log", yscale="log", xlabel="models in the grid",
             ylabel="peak resident memory (MB)",
             title="Peak process memory\n(dotted: after importing jax)")
  if not memory.lines:
    memory.set_axis_off()
    memory.text(0.5, 0.5, "peak memory not measured: the jobs shared one process\n"
                "(run with --isolate)", ha="center", va="center", transform=memory.transAxes)
  for ax in (speed, memory):
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=8)
  mach = report["machine"]
  fig.suptitle(f"Scaling of the vmapped engine (relu, batch 1024): {mach['cpu']}, "
               f"{mach['cores']} cores, {mach['backend']}, jax {mach['jax']}", fontsize=9)
  return fig


def _write_text(path, text):
  results.write_atomically(path, lambda f: f.write(text.encode()))


def main(argv=None):
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--preset", choices=sorted(PRESETS), default="full",
                 help="full: the benchmark (minutes, default); quick: tiny grids in seconds")
  p.add_argument("--backend", choices=cli.BACKENDS, default="cpu", help="JAX backend (default cpu)")
  p.add_argument("--out", default=os.path.join(cli.REPO, "runs"),
                 help="folder for benchmark.json and benchmark.md (default: runs/)")
  p.add_argument("--figures", default=os.path.join(cli.REPO, "figures"),
                 help="folder for the figures (default: figures/)")
  p.add_argument("--workloads", type=cli.name_list,
                 help=f"comma-separated subset of {','.join(PRESETS['full']['workloads'])}")
  p.add_argument("--skip-scaling", action="store_true", help="no scaling series")
  p.add_argument("--skip-profile", action="store_true",
                 help="no jax.profiler breakdown of the engine's time per workload")
  p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                 help="one fresh process per measurement, so peak memory is its own "
                      "(default: on for full, off for quick)")
  p.add_argument("--quiet", action="store_true", help="print only the table")
  args = p.parse_args(argv)
  preset = PRESETS[args.preset]
  names = args.workloads or tuple(preset["workloads"])
  unknown = [w for w in names if w not in preset["workloads"]]
  if unknown:
    raise cli.UserError(f"unknown workload(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(preset['workloads'])}")
  isolate = preset["isolate"] if args.isolate is None else args.isolate
  devices = cli.select_devices(args.backend)
  t0 = time.perf_counter()
  report = {"preset": args.preset, "isolated": isolate,
            "machine": baselines.machine_info(args.backend), "notes": NOTES,
            "workloads": {}, "scaling": {}}
  log = lambda msg: cli.log(args, msg)
  try:
    for name in names:
      spec = workload_spec(preset, name)
      log(f"[{NAME}] {name}: {spec.num_models:,} models x {spec.steps:,} steps, batch "
          f"{spec.batch_size}, {len(devices)} {args.backend} device(s)")
      report["workloads"][name] = {
          "n": spec.n, "m": spec.m, "spec": spec.to_dict(),
          "ways": baselines.benchmark_workload(spec, preset["subsets"], backend=args.backend,
                                               isolate=isolate, log=log)}
  except baselines.JobError as e:
    raise cli.UserError(str(e)) from None
  if "n2" in names:
    log(f"[{NAME}] progress display overhead (n2)")
    report["progress_overhead"] = baselines.progress_overhead(workload_spec(preset, "n2"), devices)
  if not args.skip_profile:
    report["profile"] = {}
    for name in names:
      log(f"[{NAME}] profile {name} (jax.profiler)")
      report["profile"][name] = profiling.profile(workload_spec(preset, name), devices)
  if not args.skip_scaling:
    for name, sizes in preset["scaling"].items():
      log(f"[{NAME}] scaling {name}")
      specs = [scaling_spec(name, k, sizes["steps"]) for k in sizes["models"]]
      report["scaling"][name] = {
          "n": specs[0].n, "m": specs[0].m, "activation": "relu",
          "batch_size": specs[0].batch_size,
          "rows": baselines.scaling_series(specs, backend=args.backend, isolate=isolate,
                                           log=log)}
  report["elapsed_s"] = time.perf_counter() - t0
  report["machine"]["load_average_end"] = baselines.machine_info(args.backend)[
      "load_average_1_5_15min"]
  _write_text(os.path.join(args.out, f"{NAME}.json"), json.dumps(report, indent=1))
  _write_text(os.path.join(args.out, f"{NAME}.md"), baselines.format_report(report, markdown=True))
  figures = {"speed": figure_speed(report)} if report["workloads"] else {}
  if report["scaling"]:
    figures["scaling"] = figure_scaling(report)
  cli.save_figures(args, NAME, figures)
  print(baselines.format_report(report))
  if "progress_overhead" in report:
    po = report["progress_overhead"]
    print(f"progress display: {po['run_s_on']:.3f} s on vs {po['run_s_off']:.3f} s off "
          f"({po['overhead_pct']:+.1f}%)")


if __name__ == "__main__":
  sys.exit(cli.main_guard(main)())
