"""The title block of every figure: the title and the settings a reader needs.

A figure states n, m, steps, batch, learning rate, importance and seed rule under its
title, so a PNG explains itself without the command that made it.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from matplotlib.figure import Figure

from superpos_jax import results
from superpos_jax.plotting.style import fmt
from superpos_jax.spec import SweepSpec


def _seed_text(result: results.SweepResult, seed_rule: str) -> str:
  count = len(result.coords["seed"]) if "seed" in result.coords else 1
  if count == 1:
    return "1 seed"
  if seed_rule == "best":
    return f"best of {count} seeds (lowest eval loss)"
  return f"mean of {count} seeds minus the worst (metrics; weights are never averaged)"


def _importance_text(spec: SweepSpec, r: float | None) -> str:
  """The importance setting; `r=None` names the family (r varies on an axis)."""
  kind = spec.importance_kind
  if kind == "uniform":
    return "importance $I_i = 1$"
  if r is None:
    many = ", \\ldots" if spec.n > 2 else ""
    return {"relative": f"importance $I = [1, r{many}]$", "geometric": "importance $I_i = r^i$"
            }.get(kind, f"importance ({kind})")
  if kind == "geometric":
    return f"importance $I_i = {fmt(r)}^i$"
  if kind == "relative":
    return f"importance $I = [1, {fmt(r)}{', ' + chr(8230) if spec.n > 2 else ''}]$"
  return f"importance {fmt(r)} ({kind})"


def caption(result: results.SweepResult, seed_rule: str, chosen: Mapping[str, float],
            importance_on_axis: bool = False, families: str | None = None) -> list[str]:
  """The settings a reader needs (n, m, steps, lr, importance, seed rule), as phrases.

  Args:
    result: the shown slice, still with its seed axis so the seed count can be stated.
    seed_rule: how the figure collapses seeds.
    chosen: the importance / lr the figure fixed (see `panels.select`).
    importance_on_axis: the importance r is a plot axis, not one fixed value.
    families: the model / data phrase when the figure shows more than `result`'s family.

  Returns:
    Phrases for `finish`.
  """
  spec = result.spec
  parts = [f"n={spec.n}, m={spec.m}", f"{spec.steps:,} steps × batch {spec.batch_size}"]
  lr = chosen.get("lr", spec.lrs[0] if len(spec.lrs) == 1 else None)
  if lr is not None:
    wd = chosen.get("weight_decay", spec.weight_decays[0])
    parts.append(f"AdamW lr={fmt(lr)}, wd={fmt(wd)}")
  if spec.init_scales != (1.0,) or "init_scale" in chosen:
    parts.append(f"init scale α={fmt(chosen.get('init_scale', spec.init_scales[0]))}")
  if families is not None:
    parts.append(families)
  elif spec.model != "bottleneck" or spec.data != "independent":
    parts.append(f"{spec.model} model, {spec.data} features")
  if importance_on_axis:
    parts.append(_importance_text(spec, None) + " (r on the y axis)")
  else:
    parts.append(_importance_text(spec, chosen.get("importance")))
  parts.append(_seed_text(result, seed_rule))
  return parts


def _visible_len(text: str) -> int:
  """Rough rendered length of `text`: mathtext commands and `$` count as nothing."""
  return len(re.sub(r"\\[a-zA-Z]+|[${}^_]", "", text))


def _wrap(parts: Sequence[str], width: int) -> str:
  """Joins phrases with ' · ', breaking lines between phrases at about `width` chars."""
  lines, line = [], ""
  for part in parts:
    candidate = f"{line}  ·  {part}" if line else part
    if line and _visible_len(candidate) > width:
      lines.append(line)
      line = part
    else:
      line = candidate
  return "\n".join(lines + [line])


def finish(fig: Figure, title: str, settings: Sequence[str] | str,
           note: Sequence[str] | str | None = None) -> Figure:
  """Adds the title, the wrapped settings line(s) below it, and an optional footnote.

  Args:
    fig: the drawn figure.
    title: what the figure shows.
    settings: phrases (e.g. from `caption`) or one string, wrapped to the figure width.
    note: optional footnote phrases, in small italics at the bottom.

  Returns:
    `fig`.
  """
  # About 12 characters per inch at 10 pt: long captions would widen the suptitle past
  # the figure and make constrained layout collapse the axes.
  width = max(40, int(fig.get_figwidth() * 12))
  settings = [settings] if isinstance(settings, str) else settings
  fig.suptitle(f"{title}\n{_wrap(settings, width)}", fontsize=10)
  if note:
    note = [note] if isinstance(note, str) else note
    fig.supxlabel(_wrap(note, int(width * 1.2)), fontsize=8, style="italic", color="0.3")
  return fig
