"""The SAE stage: sparse autoencoders (SAEs) trained on the hidden activations of every
toy model of a result, as a client of the toy grid's engine.

  spec.py     what to train: `SAESpec` (pure Python)
  train.py    ONE SAE, top to bottom (`make_train`)
  grid.py     the SAE grid on every toy model of a result: `run`, through the toy grid's
              plan, program skeleton, staged training and checkpoints
  stage.py    the SAE stage on the command line: train or reuse, save or rescue
              (`launch.run_stage`)
  results.py  `SAEResult`: the schema, `.npz` save/load, selection (numpy only)
  metrics.py  SAELens's one-to-one metrics (numpy + scipy only)
  summary.py  the numbers of the SAE recovery experiment (numpy only)

This file imports nothing, so the plotting layer reads `sae.results` without jax.
"""
