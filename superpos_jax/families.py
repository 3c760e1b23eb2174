"""The names of the model and data families (pure Python: specs and the CLI read them).

A family is a static choice, compiled in, like the activation. The jax code of each
lives beside its kind: model families in `model.MODELS`, data families in `data.DATA`
(one entry per name here; a test checks that they agree).
"""

from __future__ import annotations

# name -> one line for `--help` and the README (SCIENCE.md, "Beyond the study").
MODEL_FAMILIES: dict[str, str] = {
    "bottleneck": "x' = f(WᵀW x + b): the study's model, hidden layer linear",
    "privileged": "h = f(W x), x' = f(Wᵀ h + b): f on the hidden layer too (TMS)",
    "abs": "h = f(W₁ x), y = ReLU(W₂ h + b), target |x|, x in [-1, 1] (TMS computation)",
}
DATA_FAMILIES: dict[str, str] = {
    "independent": "each feature present with probability p, value U[0,1)",
    "correlated": "pairs (2k, 2k+1) present together with probability p",
    "anticorrelated": "pairs (2k, 2k+1) never together, each present with probability p <= 1/2",
}
