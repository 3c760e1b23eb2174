"""The input picture: two batches of 100 examples x 20 features at S=0.5 and S=0.99.

  python experiments/input_batches.py
"""

import os
import sys

from superpos_jax import cli, launch

NAME = "input_batches"
MAX_VALUES = 10_000_000  # features x examples per batch: a picture, not a data set
PARSER = cli.ArgumentParser(description=__doc__)
PARSER.add_argument("--sparsities", type=cli.float_list, default=(0.5, 0.99),
                    help="comma-separated sparsities S in [0, 1) (default 0.5,0.99)")
PARSER.add_argument("--features", type=cli.positive_int, default=20, help="features (default 20)")
PARSER.add_argument("--examples", type=cli.positive_int, default=100, help="examples (default 100)")
PARSER.add_argument("--seed", type=int, default=0, help="random seed in [0, 2^31) (default 0)")
PARSER.add_run_argument("--figures", default=None,
                        help="folder for the figure (default: figures/ with the default "
                             "settings, figures/custom/ with any other)")
PARSER.add_run_argument("--quiet", action="store_true")


def check(args):
  if not args.sparsities:
    raise cli.UserError("--sparsities needs at least one value")
  for s in args.sparsities:
    if not 0.0 <= s < 1.0:
      raise cli.UserError(f"every sparsity must be in [0, 1), got {s}")
  if not 0 <= args.seed < 2**31:
    raise cli.UserError(f"--seed must be in [0, 2^31), got {args.seed}")
  if args.features * args.examples > MAX_VALUES:
    raise cli.UserError(f"--features x --examples must be at most {MAX_VALUES:,} "
                        f"(got {args.features * args.examples:,}): this draws a picture")
  if args.figures is None:  # only the default picture replaces the committed one
    args.figures = os.path.join(cli.REPO, "figures", *(("custom",) if args.changed else ()))
  launch.prepare_folder(args.figures, "--figures")


def draw_batches(args):
  """`{label: [features, examples]}` sparse uniform batches, one per sparsity."""
  import jax
  import numpy as np
  from superpos_jax import data
  batches = {}
  for i, s in enumerate(args.sparsities):
    keys = jax.random.split(jax.random.fold_in(jax.random.key(args.seed), i), args.examples)
    x = jax.vmap(lambda k: data.sample_features(k, args.features, 1.0 - s))(keys)
    batches[f"S = {s:g}"] = np.asarray(x).T
  return batches


def main(argv=None):
  args = PARSER.parse_args(argv)
  check(args)
  cli.configure_host("cpu")
  from superpos_jax import plotting
  launch.save_figures(args, NAME, {"batches": plotting.figure_input_batches(draw_batches(args))},
                   args.figures)


if __name__ == "__main__":
  sys.exit(cli.run(main))
