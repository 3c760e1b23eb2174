"""What checkpoints cost: the benchmark's three workloads trained in one call, in stages
with the default checkpoint interval, and in stages with a checkpoint after every stage.

`sweep.run(checkpoint_dir=...)` cuts the training into at most `sweep.MAX_STAGES` stages
of log windows and saves the grid's state (orbax) between them when `checkpoint_every`
seconds have passed. Rows (run time, compile excluded, best of `--repeats` runs each,
one after the other in one process; a staged run's first stage includes its compiles,
reported separately as `first_call_s`):
  one call           the program as without checkpoints;
  staged, default    stages, checkpoint every 300 s (the CLI default: none in a short run);
  staged, every      stages, a checkpoint after every one (the worst case).
Writes <out>/checkpoints.json and <out>/checkpoints.md.

  python benchmarks/checkpoints.py
  python benchmarks/checkpoints.py --preset quick
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from superpos_jax import cli  # noqa: E402

WAYS = {"one call": None, "staged, default": 300.0, "staged, every": 0.0}


def time_way(spec, every, repeats: int) -> dict:
  """Best run seconds of `spec` trained one way (compiles excluded: a first run warms)."""
  from superpos_jax import sweep
  best, saved = float("inf"), 0
  for i in range(repeats + 1):
    with tempfile.TemporaryDirectory() as d:
      kw = {} if every is None else dict(checkpoint_dir=d, checkpoint_every=every)
      res = sweep.run(spec, progress=False, **kw)
    if i:  # the first run compiles
      best = min(best, res.meta["timings"]["run_s"])
      saved = res.meta["engine"].get("staged", {}).get("checkpoints_saved", 0)
  return {"run_s": round(best, 4), "checkpoints_saved": saved,
          "model_steps_per_s": round(spec.num_models * spec.steps / best)}


def measure(preset: dict, names, repeats: int = 2, log=print) -> dict:
  import benchmark
  rows = {}
  for name in names:
    spec = benchmark.workload_spec(preset, name)
    log(f"[checkpoints] {name}")
    row = {"models": spec.num_models, "steps": spec.steps,
           "ways": {way: time_way(spec, every, repeats) for way, every in WAYS.items()}}
    base = row["ways"]["one call"]["run_s"]
    for r in row["ways"].values():
      r["overhead_pct"] = round(100 * (r["run_s"] / base - 1), 1)
    rows[name] = row
  return rows


def markdown(rows: dict) -> str:
  lines = ["| workload | models x steps | way | checkpoints | run s | model-steps/s | "
           "overhead |", "|---|---|---|---|---|---|---|"]
  for name, row in rows.items():
    for way, r in row["ways"].items():
      lines.append(f"| {name} | {row['models']:,} x {row['steps']:,} | {way} | "
                   f"{r['checkpoints_saved']} | {r['run_s']:.3f} | {r['model_steps_per_s']:,} | "
                   f"{r['overhead_pct']:+.1f}% |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--preset", choices=("full", "quick"), default="full")
  p.add_argument("--repeats", type=cli.positive_int, default=2)
  p.add_argument("--out", default=os.path.join(cli.REPO, "runs"))
  args = p.parse_args(argv)
  cli.configure_host("cpu")
  import benchmark
  import layouts
  from superpos_jax import launch
  launch.prepare_folder(args.out, "--out")
  preset = benchmark.PRESETS[args.preset]
  t0 = time.perf_counter()
  report = {"machine": benchmark.harness.machine_info("cpu"), "preset": args.preset,
            "repeats": args.repeats, "rows": measure(preset, tuple(preset["workloads"]), args.repeats)}
  report["elapsed_s"] = round(time.perf_counter() - t0, 1)
  layouts.write_report(args.out, "checkpoints", report, markdown(report["rows"]))
  print(markdown(report["rows"]))


if __name__ == "__main__":
  sys.exit(cli.run(main))
