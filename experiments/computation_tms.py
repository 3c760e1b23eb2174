"""Computation in superposition at TMS's size: the |x| model at n=100 -> m=40.

computation.py runs n=20 -> m=10 and finds TMS's effect only as one extra feature that
ReLU computes when sparse. This is the same model, data, probe and summary at the size of
TMS's "Computation in superposition" section: n=100 features, m=40 neurons, importance
0.8^i, 1-S from 1 down to 0.001 (S from 0 to 0.999), one seed, 10,000 steps, ReLU (TMS's
activation; `--activations` trains others). Dense, 40
neurons compute at most m/2 = 20 features (two ReLU neurons per |x_i|); more than 20 is
computation in superposition. Numbers in computation_tms_summary.json.

  python experiments/computation_tms.py                   # paper preset (~5 min on 2 cores)
  python experiments/computation_tms.py --preset quick    # seconds, figures/quick/
"""

import sys

import computation
from superpos_jax import cli

NAME = "computation_tms"
PRESETS = {
    # ReLU, TMS's subject, at four densities: a CPU budget (--activations adds others).
    "paper": dict(n=100, m=40, densities=(1.0, 0.1, 0.01, 0.001),
                  importance_kind="geometric", importances=(0.8,), seeds=(0,), steps=10_000,
                  model="abs", activations=("relu",)),
    "quick": dict(n=100, m=40, densities=(1.0, 0.01), importance_kind="geometric",
                  importances=(0.8,), seeds=(0,), steps=30, log_every=10, batch_size=256,
                  eval_size=1024, model="abs"),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)


def main(argv=None):
  computation.run(PARSER.parse_args(argv), NAME, PRESETS)


if __name__ == "__main__":
  sys.exit(cli.run(main))
