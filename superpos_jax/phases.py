"""The n=2, m=1 phase classes and the rule that assigns them (numpy only).

A feature is *encoded* when its norm `‖W_i‖` is above `encoded`, *not encoded* below
`not_encoded`; a model with a norm in between is *ambiguous*. The default thresholds
(0.8 / 0.2) are those of public TMS replications. This is the one definition of the
phase names, their indices and the thresholds: metrics, results, plots and the CLI
import them from here.
"""

from __future__ import annotations

import dataclasses

# In the order the plots' legends show them; a phase index is a position in this tuple.
PHASES = ("neither", "feature 1 only", "superposition", "feature 2 only", "ambiguous")
NEITHER, FEATURE1, BOTH, FEATURE2, AMBIGUOUS = range(len(PHASES))


@dataclasses.dataclass(frozen=True)
class PhaseThresholds:
  """Norm thresholds of the phase rule (see the module docstring)."""

  encoded: float = 0.8
  not_encoded: float = 0.2


DEFAULT_THRESHOLDS = PhaseThresholds()
