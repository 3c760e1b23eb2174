"""SoLU at n=200 with the softmax over the instances axis, with the study's own instances.

The study's SoLU D* curve (about 0.5 dense, 0.05 sparse) is not what SoLU's definition
gives (softmax over the n features of an example). A softmax over the *instances* axis
of an instance-batched model (the TMS notebook's layout: one W [instances, m, n], x
[batch, instances, features]) couples the models sharing that tensor, so its D* depends
on how many share it: study_checks.py tried 5. The study's figure has 20 densities per
activation (1/(1-S) from 1 to 20): here they are the 20 instances of one tensor, with
the per-model Xavier std as study_checks.py's 5-instance run (`--init notebook`: the std
the notebook's `xavier_normal_` on that tensor gives, sqrt(2/(m(n+20)))); beside them
the 5-instance run's two ends (contrast; `--contrast` trains it here) and the definition
(the engine's solu) at the same 20 densities. Numbers in
solu_instances_summary.json, the curves in solu_instances_dstar.png.

  python experiments/solu_instances.py                  # paper preset (~7 min on 2 cores)
  python experiments/solu_instances.py --preset quick   # seconds, figures/quick/
"""

import dataclasses
import json
import os
import sys

import numpy as np

import study_checks
from superpos_jax import cli, launch, summary_beyond

NAME = "solu_instances"
# Read off the study's n = 200 figure by eye (the README's "≈ 0.5 dense, ≈ 0.05 sparse").
STUDY = {"dstar_densest": 0.5, "dstar_sparsest": 0.05, "densities (densest, sparsest)": [1.0, 0.05]}
PRESETS = {
    "paper": dict(n=200, m=20, densities=tuple(20.0 ** -np.linspace(0, 1, 20)),
                  importance_kind="uniform", importances=(1.0,), seeds=(0,), steps=10_000,
                  activations=("solu",)),
    "quick": dict(n=20, m=5, densities=tuple(20.0 ** -np.linspace(0, 1, 6)),
                  importance_kind="uniform", importances=(1.0,), seeds=(0,), steps=100,
                  log_every=50, batch_size=256, eval_size=1024, activations=("solu",)),
}
CONTRAST_INSTANCES = 5  # study_checks.py's instance set: 20^-linspace(0, 1, 5)
PARSER = cli.experiment_parser(__doc__, PRESETS)
PARSER.add_argument("--contrast", action="store_true",
                    help="also train the 5-instance run here (the paper preset reads its two "
                         "ends from study_checks_summary.json, which the same code wrote)")


def coupled_specs(spec, contrast: bool):
  """label -> spec whose densities are the instances of one tensor (its init: the spec's,
  `--init notebook` for the notebook's std)."""
  I = len(spec.densities)
  out = {f"softmax over {I} instances, {spec.init} init": spec}
  if contrast:
    five = dataclasses.replace(spec, densities=tuple(20.0 ** -np.linspace(0, 1, CONTRAST_INSTANCES)))
    out[f"softmax over {CONTRAST_INSTANCES} instances, {spec.init} init"] = five
  return out


def contrast_marks(folder: str) -> dict:
  """The 5-instance run's two ends from `<folder>/study_checks_summary.json`, if there."""
  path = os.path.join(folder, "study_checks_summary.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    row = json.load(f)["solu"]["variants"]["solu (softmax over instances)"]
  return {f"softmax over {CONTRAST_INSTANCES} instances (study_checks_summary.json)":
          (np.asarray([1.0, 0.05]), np.asarray([row["dstar_densest"], row["dstar_sparsest"]]))}


def main(argv=None):
  args = PARSER.parse_args(argv)
  cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)
  spec = cli.spec_from_args(args, PRESETS[args.preset])
  definition = launch.train_or_load(NAME, spec, args)
  coupled = {}
  contrast = args.contrast or args.preset != "paper"
  for label, s in coupled_specs(spec, contrast).items():
    cli.log(args, f"[{NAME}] training SoLU, {label} ({s.steps:,} steps)")
    coupled[label] = summary_beyond.dstar_variant(
        s.densities, study_checks.instance_softmax_dstar(s), instances=len(s.densities),
        init=s.init, description="softmax over the instances axis of one [instances, m, n] "
                                 "tensor, one density per instance (couples the models)")
  if args.no_plot:
    return
  from superpos_jax import plotting
  from superpos_jax.plotting.captions import caption
  folder = cli.figures_dir(args)
  marks = {} if contrast else contrast_marks(folder)
  data = summary_beyond.solu_instances_summary(definition, coupled, STUDY)
  data["contrast, 5 instances (read from study_checks_summary.json)"] = {
      label: {"dstar_densest": v[1][0], "dstar_sparsest": v[1][1]} for label, v in marks.items()}
  marks["the study's SoLU, read off its figure"] = (
      np.asarray([1.0, 0.05]), np.asarray([STUDY["dstar_densest"], STUDY["dstar_sparsest"]]))
  curves = {label: (v["densities"], v["dims_per_feature"]) for label, v in data["variants"].items()}
  settings = caption(definition, "best", {})
  figures = lambda: {"dstar": plotting.figure_dstar_variants(
      curves, settings, marks=marks, title="SoLU: where the softmax runs, and the study's curve")}
  launch.save_outputs(args, NAME, definition, figures,
                      summarize=lambda folder: summary_beyond.save(NAME, data, folder))


if __name__ == "__main__":
  sys.exit(cli.run(main))
