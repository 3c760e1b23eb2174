"""Correlated and anticorrelated feature pairs: orthogonal or antipodal, per activation?

n=10 -> m=5, uniform importance, features in pairs (2k, 2k+1), values U[0,1]: correlated
pairs are present together (probability p), anticorrelated pairs never (each with p, so
p <= 1/2). Why n=10, m=5: five pairs in five dimensions. An antipodal layout gives each
anticorrelated pair one dimension, so the ideal solution exists and embeds every feature;
correlated pairs cannot all be orthogonal in 5 dimensions, so they must choose between
orthogonal pairs (TMS's "local orthogonal bases") and dropping features. Measured: the
mean cosine between a pair's columns over the pairs with both ‖W_i‖ > 0.5; TMS (ReLU)
expects ≈ 0 for correlated and ≈ -1 for anticorrelated pairs. Numbers in
correlated_features_summary.json.

  python experiments/correlated_features.py                   # paper preset, CPU
  python experiments/correlated_features.py --preset quick    # seconds
"""

import sys

import numpy as np

from superpos_jax import cli, launch, summary_beyond

NAME = "correlated_features"
FAMILIES = ("correlated", "anticorrelated")
PRESETS = {
    "paper": dict(n=10, m=5, densities=tuple(np.geomspace(0.5, 0.005, 8)),
                  importance_kind="uniform", importances=(1.0,), seeds=(0, 1, 2), steps=10_000),
    "quick": dict(n=10, m=5, densities=(0.5, 0.1, 0.02), importance_kind="uniform",
                  importances=(1.0,), seeds=(0,), steps=300, log_every=50, batch_size=256,
                  eval_size=2048),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)


def build_specs(args):
  """`{family: spec}` for both pair data families (`--data` is not used: both are run)."""
  return {data: cli.spec_from_args(args, dict(PRESETS[args.preset], data=data))
          for data in FAMILIES}


def figures(res, args):
  from superpos_jax import plotting
  kw = dict(seed_rule=args.seed_rule)
  return {"pairs": plotting.figure_pair_cosines(res["correlated"], res["anticorrelated"]),
          **{f"gram_{data}": plotting.figure_gram(res[data], **kw) for data in FAMILIES}}


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  if args.data is not None:
    raise cli.UserError("correlated_features runs both pair families; drop --data")
  res = {data: launch.train_or_load(f"{NAME}-{data}", spec, args)
         for data, spec in build_specs(args).items()}
  if not args.no_plot:
    summarize = lambda folder: summary_beyond.save(
        NAME, summary_beyond.correlated_summary(res["correlated"], res["anticorrelated"]), folder)
    launch.save_outputs(args, NAME, res["correlated"], lambda: figures(res, args),
                        summarize=summarize)


if __name__ == "__main__":
  sys.exit(cli.run(main))
