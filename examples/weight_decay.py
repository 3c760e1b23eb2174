"""Weight decay as a grid axis: how many features n=10 -> m=5 models embed, per decay.

A worked example of a new experiment script (docs/extending.md): a preset, the standard
flags, one compiled sweep over activation × density × weight decay × seed, a figure and
a summary file. Feature i counts as embedded when ‖W_i‖ > 0.5 (best seed). AdamW's
decay pulls unused directions to 0, so a larger decay may embed fewer features: the
script measures it (its numbers are not quoted anywhere; it is an example).

  python examples/weight_decay.py                  # paper preset (not timed)
  python examples/weight_decay.py --preset quick   # seconds, figures in figures/quick/
"""

import json
import os
import sys

import numpy as np

from superpos_jax import cli, launch

NAME = "weight_decay"
DENSITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
PRESETS = {
    "paper": dict(n=10, m=5, densities=DENSITIES, importances=(0.7,), seeds=(0, 1, 2),
                  activations=("relu", "gelu"), weight_decays=(0.0, 0.01, 0.1)),
    "quick": dict(n=10, m=5, densities=DENSITIES, importances=(0.7,), seeds=(0,),
                  activations=("relu", "gelu"), weight_decays=(0.0, 0.01, 0.1),
                  steps=300, log_every=50, batch_size=256, eval_size=2048),
}
PARSER = cli.experiment_parser(__doc__, PRESETS)   # --preset, --backend, --out, --steps, ...


def embedded(result):
  """{activation: {weight decay: [embedded features per density]}}, best seed."""
  out = {}
  for act in result.coords["activation"]:
    out[str(act)] = {}
    for wd in result.coords["weight_decay"]:
      best = result.sel(activation=act, weight_decay=wd).reduce_seeds("best").squeeze()
      out[str(act)][f"{wd:g}"] = (best["feature_norms"] > 0.5).sum(axis=-1).tolist()
  return out


def figure(result):
  from matplotlib.figure import Figure   # the figure layer needs no jax
  counts = embedded(result)
  fig = Figure(figsize=(4 * len(counts), 3.2), layout="constrained")
  for ax, (act, per_wd) in zip(fig.subplots(1, len(counts), squeeze=False)[0], counts.items()):
    for wd, n_embedded in per_wd.items():
      ax.plot(result.coords["density"], n_embedded, marker="o", label=f"weight decay {wd}")
    ax.set(xscale="log", xlabel="density 1-S", ylabel="features with ‖W_i‖ > 0.5", title=act)
    ax.legend()
  return fig


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  result = launch.train_or_load(NAME, cli.spec_from_args(args, PRESETS[args.preset]), args)
  if not args.no_plot:
    def summarize(folder):
      path = os.path.join(folder, f"{NAME}_summary.json")
      with open(path, "w") as f:
        json.dump({"rule": "||W_i|| > 0.5, best seed", "densities": list(DENSITIES),
                   "embedded features": embedded(result)}, f, indent=1)
      return path
    # custom=True: an example never writes the committed figures/, even at its paper preset.
    launch.save_outputs(args, NAME, result, lambda: {"embedded": figure(result)},
                        custom=True, summarize=summarize)


if __name__ == "__main__":
  sys.exit(cli.run(main))
