"""The input picture: two batches of 100 examples x 20 features at S=0.5 and S=0.99.

  python experiments/input_batches.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from superpos_jax import cli  # noqa: E402  (cli first: it sets XLA_FLAGS before jax loads)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from superpos_jax import data  # noqa: E402

NAME = "input_batches"


def main(argv=None):
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--sparsities", type=cli.float_list, default=(0.5, 0.99),
                 help="comma-separated sparsities S (default 0.5,0.99)")
  p.add_argument("--features", type=cli.positive_int, default=20)
  p.add_argument("--examples", type=cli.positive_int, default=100)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--figures", default=os.path.join(cli.REPO, "figures"))
  p.add_argument("--quiet", action="store_true")
  args = p.parse_args(argv)
  if not args.sparsities:
    raise cli.UserError("--sparsities needs at least one value")
  batches = {}
  for i, s in enumerate(args.sparsities):
    if not 0.0 <= s < 1.0:
      raise cli.UserError(f"every sparsity must be in [0, 1), got {s}")
    keys = jax.random.split(jax.random.fold_in(jax.random.key(args.seed), i), args.examples)
    x = jax.vmap(lambda k: data.sample_features(k, args.features, 1.0 - s))(keys)
    batches[f"S = {s:g}"] = np.asarray(x).T  # [features, examples]
  from superpos_jax import plotting
  cli.save_figures(args, NAME, {"batches": plotting.figure_input_batches(batches)})


main = cli.main_guard(main)

if __name__ == "__main__":
  sys.exit(main())
