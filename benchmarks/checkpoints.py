"""What checkpoints cost: the benchmark's three workloads trained in one call, in stages
with the default checkpoint interval, and in stages with a checkpoint after every stage.

`sweep.run(checkpoint_dir=...)` cuts the training into at most `program.MAX_STAGES` stages
of log windows and saves the grid's state (orbax) between them when `checkpoint_every`
seconds have passed. Rows (run time, best of `--repeats` runs each, in one process after
a first run per way that compiles: the stage programs are cached, so the timed runs
compile nothing; the ways take turns, round after round):
  one call           the program as without checkpoints;
  staged, default    stages, checkpoint every 300 s (the CLI default: none in a short run);
  staged, every      stages, a checkpoint after every one (the worst case).
From the last two: the cost of one checkpoint, and the overhead of a long run that
checkpoints every 300 s (staging overhead + one checkpoint's cost / 300 s).
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

from superpos_jax import program
from superpos_jax import cli  # noqa: E402

from superpos_jax.launch import CHECKPOINT_EVERY as DEFAULT_EVERY  # noqa: E402  the CLI's default
WAYS = {"one call": None, "staged, default": DEFAULT_EVERY, "staged, every": 0.0}


def _one_run(spec, every) -> tuple[float, int]:
  """(run seconds, checkpoints saved) of one training of `spec` one way."""
  from superpos_jax import sweep
  with tempfile.TemporaryDirectory() as d:
    kw = {} if every is None else dict(checkpoint_dir=d, checkpoint_every=every)
    res = sweep.run(spec, progress=False, **kw)
  return res.meta["timings"]["run_s"], res.meta["engine"].get("staged", {}).get("checkpoints_saved", 0)


def time_ways(spec, repeats: int) -> dict:
  """Best run seconds of `spec` trained each way of `WAYS`. A first run per way compiles;
  then the ways take turns, `repeats` rounds, so that a change of the machine's load over
  the minutes of a measurement falls on every way alike."""
  for every in WAYS.values():
    _one_run(spec, every)
  best = {way: (float("inf"), 0) for way in WAYS}
  for _ in range(repeats):
    for way, every in WAYS.items():
      t, saved = _one_run(spec, every)
      best[way] = (min(best[way][0], t), saved)
  return {way: {"run_s": round(t, 4), "checkpoints_saved": saved,
                "model_steps_per_s": round(spec.num_models * spec.steps / t)}
          for way, (t, saved) in best.items()}


def measure(preset: dict, names, repeats: int = 3, log=print) -> dict:
  import benchmark
  rows = {}
  for name in names:
    spec = benchmark.workload_spec(preset, name)
    log(f"[checkpoints] {name}")
    row = {"models": spec.num_models, "steps": spec.steps, "ways": time_ways(spec, repeats)}
    ways = row["ways"]
    base = ways["one call"]["run_s"]
    for r in ways.values():
      r["overhead_pct"] = round(100 * (r["run_s"] / base - 1), 1)
    # What one checkpoint costs (the every-stage run's extra time over the default staged
    # run, per checkpoint), and what that makes of a long run checkpointing every 300 s.
    saved = ways["staged, every"]["checkpoints_saved"]
    extra = max(ways["staged, every"]["run_s"] - ways["staged, default"]["run_s"], 0.0)
    row["per_checkpoint_s"] = round(extra / saved, 4) if saved else None
    if saved:
      row["overhead_pct_long_run"] = round(
          ways["staged, default"]["overhead_pct"] + 100 * row["per_checkpoint_s"] / DEFAULT_EVERY, 2)
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
  lines += ["", "| workload | one checkpoint s | overhead of a long run, checkpoint every "
            f"{DEFAULT_EVERY:.0f} s |", "|---|---|---|"]
  for name, row in rows.items():
    if row.get("per_checkpoint_s") is not None:
      lines.append(f"| {name} | {row['per_checkpoint_s']:.4f} | "
                   f"{row['overhead_pct_long_run']:+.2f}% |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--preset", choices=("full", "quick"), default="full")
  p.add_argument("--repeats", type=cli.positive_int, default=3,
                 help="rounds in which the ways take turns; the best of each is kept (default 3)")
  p.add_argument("--out", default=os.path.join(cli.REPO, "runs"))
  args = p.parse_args(argv)
  cli.configure_host("cpu", compile_cache=False)  # compile times are measured, not loaded
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
