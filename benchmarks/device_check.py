"""One prepared check of an accelerator: agreement with the CPU, speed, the paper grids.

Written for a session lent a GPU machine for a few minutes: one command, under 8 minutes
on one H200-class GPU, using only what such a machine has (JAX with CUDA, optax, numpy,
matplotlib; no pip install), with jax 0.11 as well as the version pinned here:

  PYTHONPATH=. python3 benchmarks/device_check.py --out DIR              # GPU
  PYTHONPATH=. python3 benchmarks/device_check.py --backend cpu --quick --out DIR

Sections (each written to DIR/device_check_<backend>.json as soon as it is done, so a
check cut short still leaves what it measured; DIR/device_check_<backend>.md is the table):
  agreement    every registered study activation, a small n=10 grid trained on the
               device and on the host CPU: max |dW| per activation, at float32 matmuls
               (the default) and at the device's fast precision (tensorfloat32);
  workloads    benchmarks/benchmark.py's three workloads (n=2, n=10, n=200 grids of all
               seven activations): model-steps/s with the default layout, the autotuned
               one (`--chunk-size auto`) and the default layout at tensorfloat32;
  paper        the paper n=2 phase diagram and the paper n=200 D* grid: wall time
               (compile + run), model-steps/s, peak device memory;
  precision    what the runs used, and the versions and device.
`--quick` runs the same code on tiny grids (seconds on a CPU).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, HERE, os.path.join(REPO, "experiments")]

from superpos_jax import cli  # noqa: E402

NAME = "device_check"
AGREEMENT = dict(n=10, m=5, densities=(1.0, 0.1, 0.01), seeds=(0,), batch_size=1024,
                 eval_size=4096)
FAST = "tensorfloat32"


def parse_args(argv=None):
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--backend", choices=cli.BACKENDS, default="gpu", help="device to check (default gpu)")
  p.add_argument("--out", required=True, help="folder for device_check_<backend>.json and .md")
  p.add_argument("--quick", action="store_true", help="tiny grids: checks that it works")
  p.add_argument("--skip-autotune", action="store_true", help="no autotuned rows")
  p.add_argument("--sections", type=cli.name_list, default=("agreement", "workloads", "paper"),
                 help="comma-separated subset of agreement,workloads,paper")
  return p.parse_args(argv)


def _peak_device_mb(devices) -> float | None:
  """Peak bytes in use so far on the busiest device (None where devices do not say)."""
  peaks = []
  for d in devices:
    try:
      stats = d.memory_stats() or {}
    except Exception:  # noqa: BLE001 (backends differ in what they raise)
      stats = {}
    if "peak_bytes_in_use" in stats:
      peaks.append(stats["peak_bytes_in_use"] / 2**20)
  return max(peaks) if peaks else None


def _row(res) -> dict:
  t = res.meta["timings"]
  e = res.meta["engine"]
  return {"model_steps_per_s": round(t["model_steps_per_s"]), "compile_s": round(t["compile_s"], 2),
          "run_s": round(t["run_s"], 3), "chunk_size": e["chunk_size"], "devices": e["devices"],
          "span_seeds": e["span_seeds"], "precision": e["precision"]}


def agreement(devices, quick: bool) -> dict:
  """Max |W_device - W_cpu| per activation, at float32 and at the fast precision."""
  import jax
  import numpy as np
  from superpos_jax import activations, sweep
  from superpos_jax.spec import STUDY_ACTIVATIONS, SweepSpec
  spec = SweepSpec(**AGREEMENT, activations=STUDY_ACTIVATIONS, steps=30 if quick else 1000,
                   log_every=10 if quick else 100)
  cpu = sweep.run(spec, devices=jax.devices("cpu")[:1], progress=False)
  out = {"spec": spec.to_dict(), "max_abs_dW": {}}
  for precision in ("float32", FAST):
    dev = sweep.run(spec, devices=devices, matmul_precision=precision, progress=False)
    out["max_abs_dW"][precision] = {
        a: float(np.nanmax(np.abs(dev.sel(activation=a)["W"] - cpu.sel(activation=a)["W"])))
        for a in spec.activations}
  return out


def workloads(devices, quick: bool, autotune: bool) -> dict:
  """The benchmark's three workloads: default layout, autotuned, default at FAST."""
  import benchmark
  from superpos_jax import sweep
  preset = benchmark.PRESETS["quick" if quick else "full"]
  out = {}
  for name in preset["workloads"]:
    spec = benchmark.workload_spec(preset, name)
    rows = {"models": spec.num_models, "steps": spec.steps,
            "default": _row(sweep.run(spec, devices=devices, progress=False))}
    if autotune:
      res = sweep.run(spec, devices=devices, chunk_size="auto", progress=False)
      rows["autotuned"] = dict(_row(res), candidates=res.meta["engine"]["autotune"]["rates"])
    rows[FAST] = _row(sweep.run(spec, devices=devices, matmul_precision=FAST, progress=False))
    out[name] = rows
    print(f"[{NAME}] {name}: " + ", ".join(
        f"{k} {v['model_steps_per_s']:,} model-steps/s" for k, v in rows.items()
        if isinstance(v, dict)), flush=True)
  return out


def paper(devices, quick: bool) -> dict:
  """The paper n=2 phase diagram and the paper n=200 D* grid, timed on the device."""
  import dims_per_feature
  import phase_diagram
  from superpos_jax import sweep
  from superpos_jax.spec import SweepSpec
  out = {}
  for name, module in (("phase_diagram", phase_diagram), ("dims_per_feature", dims_per_feature)):
    spec = SweepSpec(**module.PRESETS["quick" if quick else "paper"])
    t0 = time.perf_counter()
    res = sweep.run(spec, devices=devices, progress=False)
    out[name] = dict(_row(res), models=spec.num_models, steps=spec.steps,
                     wall_s=round(time.perf_counter() - t0, 2),
                     peak_device_mb=_peak_device_mb(devices))
    print(f"[{NAME}] {name}: {spec.num_models:,} models x {spec.steps:,} steps in "
          f"{out[name]['wall_s']} s", flush=True)
  out["total_wall_s"] = round(sum(v["wall_s"] for v in out.values()), 2)
  return out


def environment_of(devices) -> dict:
  import jax
  from superpos_jax.environment import environment
  env = environment(devices)
  env.update(cpu=platform.processor() or platform.machine(),
             default_matmul_precision=str(jax.config.jax_default_matmul_precision),
             engine_precision="float32 (Precision.HIGHEST on every dot; --matmul-precision)",
             xla_flags=os.environ.get("XLA_FLAGS", ""))
  return env


def markdown(report: dict) -> str:
  lines = [f"# Device check: {report['env'].get('device_kind')} x {report['env'].get('device_count')} "
           f"({report['env'].get('backend')}, jax {report['env'].get('jax')})", ""]
  if "agreement" in report.get("sections", {}):
    dW = report["sections"]["agreement"]["max_abs_dW"]
    lines += ["| activation | max abs dW float32 | max abs dW " + FAST + " |", "|---|---|---|"]
    lines += [f"| {a} | {dW['float32'][a]:.2e} | {dW[FAST][a]:.2e} |" for a in dW["float32"]]
    lines.append("")
  if "workloads" in report.get("sections", {}):
    lines += ["| workload | models x steps | default | autotuned | " + FAST + " |", "|---|---|---|---|---|"]
    for name, w in report["sections"]["workloads"].items():
      rate = lambda k: f"{w[k]['model_steps_per_s']:,} (chunk {w[k]['chunk_size']})" if k in w else "n/a"
      lines.append(f"| {name} | {w['models']:,} x {w['steps']:,} | {rate('default')} | "
                   f"{rate('autotuned')} | {rate(FAST)} |")
    lines.append("")
  if "paper" in report.get("sections", {}):
    lines += ["| paper grid | models x steps | wall s | model-steps/s | peak device MB |", "|---|---|---|---|---|"]
    for name, p in report["sections"]["paper"].items():
      if isinstance(p, dict):
        lines.append(f"| {name} | {p['models']:,} x {p['steps']:,} | {p['wall_s']} | "
                     f"{p['model_steps_per_s']:,} | {p['peak_device_mb']} |")
    lines.append("")
  for name, err in report.get("errors", {}).items():
    lines.append(f"- {name} failed: {err}")
  return "\n".join(lines) + "\n"


def write(args, report: dict) -> None:
  from superpos_jax import results
  base = os.path.join(args.out, f"{NAME}_{args.backend}")
  results.write_atomically(base + ".json", lambda f: f.write(json.dumps(report, indent=1).encode()))
  results.write_atomically(base + ".md", lambda f: f.write(markdown(report).encode()))


def main(argv=None) -> None:
  args = parse_args(argv)
  unknown = [s for s in args.sections if s not in ("agreement", "workloads", "paper")]
  if unknown:
    raise cli.UserError(f"unknown section(s) {', '.join(unknown)}; valid: agreement, workloads, paper")
  cli.configure_host(args.backend, compile_cache=False)  # first: CPU flags for a CPU check only; compile times measured
  from superpos_jax import launch
  launch.prepare_folder(args.out, "--out")
  devices = launch.select_devices(args.backend)
  report = {"quick": args.quick, "env": environment_of(devices), "sections": {}, "errors": {},
            "elapsed_s": {}}
  write(args, report)
  for name in args.sections:
    t0 = time.perf_counter()
    try:
      if name == "agreement":
        report["sections"][name] = agreement(devices, args.quick)
      elif name == "workloads":
        report["sections"][name] = workloads(devices, args.quick, not args.skip_autotune)
      else:
        report["sections"][name] = paper(devices, args.quick)
    except Exception as e:  # noqa: BLE001 (one failing section must not lose the others)
      report["errors"][name] = f"{type(e).__name__}: {e}".splitlines()[0][:500]
      traceback.print_exc()
    report["elapsed_s"][name] = round(time.perf_counter() - t0, 1)
    write(args, report)
  print(markdown(report))
  if report["errors"]:
    raise cli.UserError(f"sections failed: {', '.join(report['errors'])} (see the JSON)")


if __name__ == "__main__":
  sys.exit(cli.run(main))
