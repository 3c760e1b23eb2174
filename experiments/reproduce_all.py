"""Reproduce every figure of the study (one command).

Runs input_batches, feature_matrices, phase_diagram and dims_per_feature in turn, each
writing its explorer page beside its figures (`<name>_explorer.html`, docs/explorer.md),
then prints what each step took. Every step's flags are checked (and its spec built)
before the first one trains, and each step gets only the flags it knows (--r goes to
feature_matrices, --grid to phase_diagram). Results already in --out with the same spec
are reused. The paper preset writes figures/; any other preset writes figures/<preset>/.

  python experiments/reproduce_all.py                  # paper preset on CPU
  python experiments/reproduce_all.py --preset quick   # about a minute, figures/quick/
"""

import argparse
import json
import os
import platform
import resource
import sys
import time

import dims_per_feature
import feature_matrices
import input_batches
import phase_diagram
from superpos_jax import cli, results

TRAINING = (feature_matrices, phase_diagram, dims_per_feature)


def _parser():
  p = cli.experiment_parser(__doc__, phase_diagram.PRESETS)
  p.add_argument("--r", type=float, help="feature_matrices: importance decay I_i = r^i")
  p.add_argument("--grid", type=cli.positive_int, help="phase_diagram: points per axis")
  p.add_argument("--importances", type=cli.float_list,
                 help="phase_diagram: relative importances of feature 2")
  return p


def step_argv(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
  """The flags of `args` that `parser` knows and that differ from their defaults."""
  argv = []
  for action in parser._actions:  # argparse's own list of a parser's flags
    if not action.option_strings or action.dest == "help":
      continue
    value = getattr(args, action.dest, None)
    if value is None or value == action.default:
      continue
    flag = action.option_strings[-1]
    if isinstance(action, argparse._StoreTrueAction):
      argv.append(flag)
    else:
      argv += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
  return argv


def main(argv=None):
  args = _parser().parse_args(argv)
  args.explore = True  # one explorer page per experiment, beside its figures
  steps = [(m, step_argv(args, m.PARSER)) for m in TRAINING]
  figures = cli.figures_dir(args)
  inputs_argv = ["--figures", figures] + (["--quiet"] if args.quiet else [])
  # Validate everything before anything trains: every step's flags and spec.
  input_batches.check(input_batches.PARSER.parse_args(inputs_argv))
  for module, sargv in steps:
    module.build_spec(module.PARSER.parse_args(sargv))
  timings = []
  t0 = time.perf_counter()
  for name, run in [("input_batches", lambda: input_batches.main(inputs_argv))] + [
      (m.NAME, lambda m=m, a=a: m.main(a + ["--figures", figures])) for m, a in steps]:
    t = time.perf_counter()
    status = cli.run(lambda _: run())
    timings.append((name, time.perf_counter() - t, status))
    if status:
      break
  report = {"preset": args.preset, "backend": args.backend,
            "steps": [{"step": name, "seconds": round(secs, 1), "exit_status": st}
                      for name, secs, st in timings],
            "total_seconds": round(time.perf_counter() - t0, 1),
            # Every step runs in this process, so its peak is the reproduction's.
            "peak_memory_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  print("\nsummary:")
  for row in report["steps"]:
    st = row["exit_status"]
    print(f"  {row['step']:18s} {row['seconds']:8.1f} s  {'ok' if st == 0 else f'FAILED (exit {st})'}")
  print(f"  {'total':18s} {report['total_seconds']:8.1f} s")
  print(f"  {'peak memory':18s} {report['peak_memory_gib']:8.2f} GiB")
  path = os.path.join(figures, "reproduce_all_timings.json")
  results.write_atomically(path, lambda f: f.write(json.dumps(report, indent=1).encode()))
  print(f"  wrote {os.path.relpath(path)}")
  if any(st for _, _, st in timings):
    raise SystemExit(max(st for _, _, st in timings))


if __name__ == "__main__":
  sys.exit(cli.run(main))
