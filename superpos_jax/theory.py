"""Closed-form results the engine is checked against (numpy only).

The n=2, m=1 ReLU model has exact optimal losses for its three candidate solutions
(Wattenberg, "Exploring exact toy models"); their argmin is the theoretical phase that
the empirical ReLU phase diagram should match.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from superpos_jax.phases import BOTH, FEATURE1, FEATURE2


def relu_closed_form_losses(density: Any, rel_importance: Any) -> np.ndarray:
  """Closed-form losses of the three n=2, m=1 ReLU candidate solutions.

  Feature i alone, with the optimal constant output c = E[x_i] = s/2 in place of a lost
  feature, costs `E[x²] - E[x]² = s/3 - s²/4` times its importance; the antipodal
  `W = [1, -1]`, b = 0 errs only when both features are present, by `min(x_1, x_2)`,
  costing `E[min²]·s² = s²/6` per feature (Wattenberg, "Exploring exact toy models").

  Args:
    density: feature density s = 1 - S, any shape.
    rel_importance: importance r of feature 2 (feature 1 has importance 1), broadcastable.

  Returns:
    `[..., 3]` losses of (keep feature 1 only, antipodal pair, keep feature 2 only).
  """
  s, r = np.broadcast_arrays(np.asarray(density, np.float64),
                             np.asarray(rel_importance, np.float64))
  one_feature = s / 3 - s**2 / 4
  return np.stack([r * one_feature, (1 + r) * s**2 / 6, one_feature], axis=-1)


def relu_closed_form_phase(density: Any, rel_importance: Any) -> np.ndarray:
  """Theoretical n=2, m=1 ReLU phase: the argmin of `relu_closed_form_losses`.

  Ties go to the earlier candidate (feature 1 only, then superposition): at r = 1 the two
  single-feature solutions tie exactly.

  Args:
    density: feature density s = 1 - S, any shape.
    rel_importance: importance r of feature 2, broadcastable against `density`.

  Returns:
    Integer phase indices into `phases.PHASES` (FEATURE1, BOTH or FEATURE2), broadcast
    shape.
  """
  losses = relu_closed_form_losses(density, rel_importance)
  return np.array([FEATURE1, BOTH, FEATURE2])[np.argmin(losses, axis=-1)]
