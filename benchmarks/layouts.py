"""The default layout against the autotuned one, on the benchmark's three workloads.

For each workload of benchmarks/benchmark.py: the device kind's default layout
(`plan.make_plan`) and the layout `--chunk-size auto` picks (`autotune.autotune`,
measured afresh, not remembered), each trained in full, best of `--repeats` runs
(compile excluded, same process, one after the other). benchmark.py runs this as its
`layouts` section; alone it writes <out>/layouts.json and <out>/layouts.md.

  python benchmarks/layouts.py                     # full workloads, CPU
  python benchmarks/layouts.py --preset quick
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from superpos_jax import cli  # noqa: E402


def best_rate(layout, repeats: int) -> tuple[float, float]:
  """(best model-steps/s of `repeats` runs, compile s) of `layout`, compile excluded."""
  import jax
  from superpos_jax import sweep
  compiled, compile_s = sweep.compile_plan(layout)
  inputs = sweep.program_inputs(layout.spec)
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*inputs))
    best = min(best, time.perf_counter() - t0)
  return layout.spec.num_models * layout.spec.steps / best, compile_s


def compare(spec, devices, repeats: int = 3) -> dict:
  """The default and the autotuned layout of `spec` on `devices`, each timed in full."""
  from superpos_jax import autotune, plan
  default = plan.make_plan(spec, devices=plan.choose_devices(spec, devices))
  old = os.environ.get("SUPERPOS_JAX_CACHE")
  with tempfile.TemporaryDirectory() as fresh:  # measure, do not recall
    os.environ["SUPERPOS_JAX_CACHE"] = fresh
    try:
      t0 = time.perf_counter()
      tuned = autotune.autotune(spec, default.devices)
      tune_s = time.perf_counter() - t0
    finally:
      if old is None:
        os.environ.pop("SUPERPOS_JAX_CACHE", None)
      else:
        os.environ["SUPERPOS_JAX_CACHE"] = old
  out = {"models": spec.num_models, "steps": spec.steps, "autotune_s": round(tune_s, 1),
         "candidates": tuned.autotuned["rates"]}
  for name, layout in (("default", default), ("autotuned", tuned)):
    rate, compile_s = best_rate(layout, repeats)
    out[name] = {"layout": layout.describe() | {"autotune": None}, "model_steps_per_s": round(rate),
                 "compile_s": round(compile_s, 2)}
  out["autotuned_over_default"] = round(out["autotuned"]["model_steps_per_s"]
                                        / out["default"]["model_steps_per_s"], 3)
  return out


def markdown(rows: dict) -> str:
  lines = ["| workload | models x steps | default layout | model-steps/s | autotuned layout | "
           "model-steps/s | autotuned / default |", "|---|---|---|---|---|---|---|"]
  for name, r in rows.items():
    lay = lambda k: (f"chunk {r[k]['layout']['chunk_size']}"
                     f"{', spanning seeds' if r[k]['layout']['span_seeds'] else ''}, "
                     f"{r[k]['layout']['devices']} device(s)")
    lines.append(f"| {name} | {r['models']:,} x {r['steps']:,} | {lay('default')} | "
                 f"{r['default']['model_steps_per_s']:,} | {lay('autotuned')} | "
                 f"{r['autotuned']['model_steps_per_s']:,} | {r['autotuned_over_default']:.2f} |")
  return "\n".join(lines) + "\n"


def write_report(out: str, name: str, report: dict, table: str) -> None:
  """<out>/<name>.json (the report) and <out>/<name>.md (its table), each written atomically."""
  from superpos_jax import results
  results.write_atomically(os.path.join(out, f"{name}.json"),
                           lambda f: f.write(json.dumps(report, indent=1).encode()))
  results.write_atomically(os.path.join(out, f"{name}.md"), lambda f: f.write(table.encode()))


def measure(preset: dict, names, devices, repeats: int = 3, log=print) -> dict:
  import benchmark
  rows = {}
  for name in names:
    spec = benchmark.workload_spec(preset, name)
    log(f"[layouts] {name}: default vs autotuned")
    rows[name] = compare(spec, devices, repeats)
  return rows


def main(argv=None) -> None:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--preset", choices=("full", "quick"), default="full")
  p.add_argument("--backend", choices=cli.BACKENDS, default="cpu")
  p.add_argument("--repeats", type=cli.positive_int, default=3)
  p.add_argument("--out", default=os.path.join(cli.REPO, "runs"))
  args = p.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=False)  # compile times are measured, not loaded
  import benchmark
  from superpos_jax import launch
  launch.prepare_folder(args.out, "--out")
  devices = launch.select_devices(args.backend)
  preset = benchmark.PRESETS[args.preset]
  report = {"machine": benchmark.harness.machine_info(args.backend), "preset": args.preset,
            "repeats": args.repeats,
            "rows": measure(preset, tuple(preset["workloads"]), devices, args.repeats)}
  write_report(args.out, "layouts", report, markdown(report["rows"]))
  print(markdown(report["rows"]))


if __name__ == "__main__":
  sys.exit(cli.run(main))
