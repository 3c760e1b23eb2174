"""What JAX's persistent compilation cache saves: a quick experiment run three times in
fresh processes, with the cache off, with an empty cache (it compiles and writes), and
with the cache the second run filled (it loads), each run's compile and training time
read from its result file.

  python benchmarks/compile_cache.py                      # figures/compile_cache.{json,md}
  python benchmarks/compile_cache.py --experiment phase_diagram --repeats 3
"""

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from superpos_jax import cli, results  # noqa: E402
from superpos_jax.atomic import write_atomically  # noqa: E402

WAYS = ("cache off", "empty cache (compile, write)", "filled cache (load)")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def one_run(experiment: str, cache: str, out: str) -> dict:
  """One fresh process of `experiment`'s quick preset: its timings and wall time."""
  cmd = [sys.executable, os.path.join(REPO, "experiments", f"{experiment}.py"), "--preset",
         "quick", "--no-plot", "--force", "--quiet", "--out", out]
  env = dict(os.environ, SUPERPOS_JAX_COMPILE_CACHE=cache)
  t0 = time.perf_counter()
  done = subprocess.run(cmd, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if done.returncode:
    raise cli.UserError(f"{experiment} failed: {done.stderr.strip().splitlines()[-1:]}")
  timings = {}
  for path in glob.glob(os.path.join(out, "*.npz")):
    t = results.load(path).meta["timings"]
    for k in ("compile_s", "run_s"):
      timings[k] = timings.get(k, 0.0) + t[k]
  return dict(timings, wall_s=wall)


def measure(experiment: str, repeats: int) -> dict:
  """The three ways, `repeats` rounds, ways interleaved within a round."""
  rows = {w: [] for w in WAYS}
  for _ in range(repeats):
    with tempfile.TemporaryDirectory() as tmp:
      cache = os.path.join(tmp, "compiled")
      rows[WAYS[0]].append(one_run(experiment, "off", os.path.join(tmp, "a")))
      rows[WAYS[1]].append(one_run(experiment, cache, os.path.join(tmp, "b")))
      rows[WAYS[2]].append(one_run(experiment, cache, os.path.join(tmp, "c")))
  best = {w: min(r, key=lambda x: x["compile_s"]) for w, r in rows.items()}
  return {"experiment": experiment, "preset": "quick", "repeats": repeats, "best": best,
          "runs": rows, "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
          "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def markdown(report: dict) -> str:
  lines = [f"`{report['experiment']}` quick preset, fresh process each run, best of "
           f"{report['repeats']} ({report['cpu']}, {report['cpu_count']} cores):", "",
           "| way | compile s | training s | process wall s |", "|---|---|---|---|"]
  for way, r in report["best"].items():
    lines.append(f"| {way} | {r['compile_s']:.2f} | {r['run_s']:.2f} | {r['wall_s']:.1f} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--experiment", default="feature_matrices", help="an experiment script's name")
  p.add_argument("--repeats", type=cli.positive_int, default=2, help="rounds (default 2)")
  p.add_argument("--out", default=os.path.join(REPO, "figures"), help="folder for the report")
  args = p.parse_args(argv)
  if not os.path.exists(os.path.join(REPO, "experiments", f"{args.experiment}.py")):
    raise cli.UserError(f"no experiment {args.experiment!r} in experiments/")
  report = measure(args.experiment, args.repeats)
  os.makedirs(args.out, exist_ok=True)
  base = os.path.join(args.out, "compile_cache")
  write_atomically(base + ".json", lambda f: f.write(json.dumps(report, indent=1).encode()))
  write_atomically(base + ".md", lambda f: f.write(markdown(report).encode()))
  print(markdown(report))


if __name__ == "__main__":
  sys.exit(cli.run(main))
