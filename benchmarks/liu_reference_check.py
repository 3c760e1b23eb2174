"""The engine's Liu et al. set-up against their own PyTorch code, step by step.

Trains one model both ways from the same W₀, b₀ on the same uniforms: the engine's
`Trainer.step` (model `bottleneck_normal_bias`, data `power_law`, optimiser `adamw_liu`,
importance 1/n) and their code (exp/adamw.py imported from a checkout of
liuyz0/SuperpositionScaling, exp-10's get_lr, FeatureRecovery's forward and
nn.MSELoss, written out here), and records the largest |W_engine - W_theirs| and the
loss at every step for weight decays -1, 0.5 and 1. Needs torch
(`pip install -e '.[bench]'`) and their repository on disk.

  python benchmarks/liu_reference_check.py --liu-repo PATH   # long: ~1 min
"""

import argparse
import json
import math
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def their_lr(step: int, lr: float, n_steps: int, warmup_steps: int) -> float:
  """exp-10's get_lr, verbatim in substance."""
  step = step + 1
  min_lr = 0.05 * lr
  if step < warmup_steps:
    return lr * step / warmup_steps
  cosine = math.cos(math.pi * (step - warmup_steps) / (n_steps - warmup_steps))
  return (lr - min_lr) * 0.5 * (1 + cosine) + min_lr


def compare(AdamW, wd: float, n: int = 100, m: int = 10, B: int = 256, steps: int = 200, a: float = 1.5):
  """Max |ΔW| and max relative loss difference over `steps` steps at weight decay `wd`."""
  import jax
  import jax.numpy as jnp
  import torch
  from superpos_jax import activations, data, train
  from superpos_jax.model import Params
  from superpos_jax.spec import SweepSpec
  density = data.exponent_density(a)
  spec = SweepSpec(n=n, m=m, activations=("relu",), densities=(density,), importance_kind="explicit",
                   importances=(1.0 / n,), importance_vectors=((1.0 / n,) * n,), steps=steps,
                   batch_size=B, weight_decays=(wd,), lrs=(1e-2,), init="normal",
                   model="bottleneck_normal_bias", data="power_law", optimizer="adamw_liu", log_every=steps)
  trainer = train.make_train(spec, activations.get("relu"))
  rng = np.random.default_rng(0)
  W0 = (rng.standard_normal((n, m)) / math.sqrt(m)).astype(np.float32)  # theirs: [n, m]
  b0 = rng.standard_normal(n).astype(np.float32)
  state = trainer.init(jax.random.key(0), 1.0, jnp.float32(1e-2), jnp.float32(wd))
  state = state._replace(params=Params(W=jnp.asarray(W0.T), b=jnp.asarray(b0)))
  W, b = torch.nn.Parameter(torch.tensor(W0)), torch.nn.Parameter(torch.tensor(b0))
  opt = AdamW([{"params": W, "weight_decay": wd}, {"params": b, "weight_decay": 0.0}])
  p = np.asarray(data.power_law_frequencies(n, jnp.float32(density)))[:, None]
  step = jax.jit(lambda st, u: trainer.step(st, u, jnp.float32(density), jnp.full((n,), 1.0 / n), 1e-2, wd))
  worst_w = worst_loss = 0.0
  for t in range(steps):
    u = rng.random((n, B), dtype=np.float32)
    state, loss_engine = step(state, jnp.asarray(u))
    x = torch.tensor(((u < p) * (u / p) * 2).T)
    for group in opt.param_groups:
      group["lr"] = their_lr(t, 1e-2, steps, int(0.1 * steps))
    opt.zero_grad()
    loss = torch.nn.MSELoss()(torch.relu(x @ W @ W.T + b), x)
    loss.backward()
    opt.step()
    worst_loss = max(worst_loss, abs(loss.item() - float(loss_engine)) / loss.item())
    worst_w = max(worst_w, float(np.abs(np.asarray(state.params.W).T - W.detach().numpy()).max()))
  return {"max |W_engine - W_theirs|": worst_w, "max relative loss difference": worst_loss,
          "final loss (theirs)": loss.item(), "steps": steps, "n": n, "m": m, "batch": B, "a": a}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--liu-repo", required=True, help="a checkout of liuyz0/SuperpositionScaling")
  p.add_argument("--out", default=os.path.join(REPO, "figures", "scaling_law_reference_check.json"))
  args = p.parse_args(argv)
  sys.path.insert(0, os.path.join(args.liu_repo, "exp"))
  from adamw import AdamW  # their optimiser, unchanged
  import torch
  out = {"what": __doc__.split("\n\n")[1].replace("\n", " "), "torch": torch.__version__,
         "by weight decay": {f"{wd:g}": compare(AdamW, wd) for wd in (-1.0, 0.5, 1.0)}}
  with open(args.out, "w") as f:
    json.dump(out, f, indent=1)
  print(json.dumps(out["by weight decay"], indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
