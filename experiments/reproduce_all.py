"""Reproduce every figure of the study into figures/ (one command).

Runs input_batches, feature_matrices, phase_diagram and dims_per_feature in turn with the
same flags (--preset, --backend, --steps, --seeds, ...), then prints what it wrote and
how long each step took. Results already in --out with the same spec are reused.

  python experiments/reproduce_all.py                  # paper preset on CPU
  python experiments/reproduce_all.py --preset quick   # about a minute
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from superpos_jax import cli  # noqa: E402  (cli first: it sets XLA_FLAGS before jax loads)

import dims_per_feature  # noqa: E402
import feature_matrices  # noqa: E402
import input_batches  # noqa: E402
import phase_diagram  # noqa: E402

STEPS = (feature_matrices, phase_diagram, dims_per_feature)


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  if "-h" in argv or "--help" in argv:
    print(__doc__)
    print("Flags are passed to every experiment; theirs are:\n")
    return feature_matrices.main(["--help"])
  timings = []
  t0 = time.perf_counter()
  shared = argparse.ArgumentParser(add_help=False)
  shared.add_argument("--figures")
  shared.add_argument("--quiet", action="store_true")
  known, _ = shared.parse_known_args(argv)
  status = input_batches.main((["--figures", known.figures] if known.figures else []) +
                              (["--quiet"] if known.quiet else []))
  timings.append(("input_batches", time.perf_counter() - t0, status))
  if status:
    return status
  for module in STEPS:
    t = time.perf_counter()
    status = module.main(argv)
    timings.append((module.NAME, time.perf_counter() - t, status))
    if status:
      break
  print("\nsummary:")
  for name, secs, st in timings:
    print(f"  {name:18s} {secs:8.1f} s  {'ok' if st == 0 else f'FAILED (exit {st})'}")
  print(f"  {'total':18s} {time.perf_counter() - t0:8.1f} s")
  return max(st for _, _, st in timings)


if __name__ == "__main__":
  sys.exit(main())
