"""What every experiment script shares: flags, backend choice, caching, errors.

Import this module BEFORE jax in a script: on the CPU backend it splits the host into one
XLA device per core, so the sweep's `shard_map` keeps every core busy (measured ~1.5-3x
on the 2-core CPU), and it keeps XLA CPU's YNNPACK library off reductions: with several
host devices those leaked memory on every execution (a 33,600-model, 10,000-step phase
diagram grew to 24 GB and was killed; an 8,400-model n=2 grid grew ~1 GB per 1,000
steps; with the flag, flat). Dots stay on YNNPACK, and `loss.batch_loss` writes its sums
as dots. A flag already in XLA_FLAGS is left as the user set it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable


def _jaxlib_version() -> tuple[int, ...]:
  from importlib import metadata
  try:
    return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return (0,)


XLA_DEFAULTS = {"xla_force_host_platform_device_count": str(os.cpu_count() or 1)}
if _jaxlib_version() >= (0, 10):  # where it was measured; older XLA may not know the flag
  XLA_DEFAULTS["xla_cpu_experimental_ynn_fusion_type"] = "-reduce"
for _flag, _value in XLA_DEFAULTS.items():
  if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{_flag}={_value}".strip()

import jax  # noqa: E402  (after XLA_FLAGS on purpose)

from superpos_jax import activations, results, sweep  # noqa: E402

BACKENDS = ("cpu", "gpu", "tpu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UserError(Exception):
  """Bad input from the command line: printed as one line, exit status 2."""


def float_list(text: str) -> tuple[float, ...]:
  try:
    return tuple(float(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def name_list(text: str) -> tuple[str, ...]:
  return tuple(v.strip() for v in text.split(",") if v.strip())


def positive_float(text: str) -> float:
  try:
    v = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
  if not (v > 0 and v < float("inf")):
    raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
  return v


def positive_int(text: str) -> int:
  try:
    v = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if v < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
  return v


class ArgumentParser(argparse.ArgumentParser):
  """argparse, but a bad flag prints one line (not the whole usage block) and exits 2."""

  def __init__(self, **kwargs):
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    super().__init__(**kwargs)

  def error(self, message):
    self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def make_parser(doc: str, presets: dict[str, dict[str, Any]]) -> argparse.ArgumentParser:
  """Parser with the flags every experiment takes; `doc` is the script's docstring."""
  p = ArgumentParser(description=doc,
                     epilog="activations:\n  " + activations.describe().replace("\n", "\n  "))
  p.add_argument("--preset", choices=sorted(presets), default="paper",
                 help="paper: the study's settings (default); quick: same code path in seconds")
  p.add_argument("--backend", choices=BACKENDS, default="cpu", help="JAX backend (default cpu)")
  p.add_argument("--out", default=os.path.join(REPO, "runs"),
                 help="folder for result .npz files (default: runs/)")
  p.add_argument("--figures", default=os.path.join(REPO, "figures"),
                 help="folder for figures (default: figures/)")
  p.add_argument("--steps", type=positive_int, help="training steps (default from preset)")
  p.add_argument("--seeds", type=positive_int, help="seeds per grid point (default from preset)")
  p.add_argument("--activations", type=name_list,
                 help="comma-separated activation names (default: the study's seven)")
  p.add_argument("--densities", type=float_list, help="comma-separated densities 1-S in (0, 1]")
  p.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
  p.add_argument("--batch-size", type=positive_int, help="examples per step (default 1024)")
  p.add_argument("--init", choices=("xavier_normal", "notebook"), help="weight init (default xavier_normal)")
  p.add_argument("--seed-rule", choices=("best", "trimmed_mean"), default="best",
                 help="how figures collapse seeds: lowest eval loss (default) or mean without the worst")
  p.add_argument("--max-memory", type=positive_float, default=None,
                 help="memory budget in GiB (default: half the host memory); the grid is "
                      "trained in smaller chunks to fit")
  p.add_argument("--coordinator", help="multi-host: address:port of process 0 "
                 "(with --num-processes and --process-id; see README)")
  p.add_argument("--num-processes", type=positive_int, help="multi-host: processes in all")
  p.add_argument("--process-id", type=int, help="multi-host: this process's index")
  p.add_argument("--force", action="store_true", help="re-train even if a matching result exists")
  p.add_argument("--no-plot", action="store_true", help="only train and save the .npz")
  p.add_argument("--quiet", action="store_true", help="no progress display")
  return p


def spec_from_args(args: argparse.Namespace, preset: dict[str, Any]) -> sweep.SweepSpec:
  """The preset's spec fields, overridden by whichever flags were given."""
  fields = dict(preset)
  if args.steps is not None:
    fields["steps"] = args.steps
    fields["log_every"] = min(fields.get("log_every", 100), args.steps)
  if args.seeds is not None:
    fields["seeds"] = tuple(range(args.seeds))
  if args.activations is not None:
    fields["activations"] = args.activations
  if args.densities is not None:
    fields["densities"] = args.densities
  if args.lr is not None:
    fields["lrs"] = (args.lr,)
  if args.batch_size is not None:
    fields["batch_size"] = args.batch_size
  if args.init is not None:
    fields["init"] = args.init
  return sweep.SweepSpec(**fields)


def select_devices(backend: str) -> list:
  """Devices of `backend`, or a one-line UserError naming the available backends."""
  try:
    return jax.devices(backend)
  except RuntimeError:
    available = []
    for b in BACKENDS:
      try:
        jax.devices(b)
        available.append(b)
      except RuntimeError:
        pass
    raise UserError(f"JAX has no {backend!r} backend on this machine "
                    f"(available: {', '.join(available) or 'none'})") from None


def init_distributed(args: argparse.Namespace) -> None:
  """Joins JAX's multi-host runtime when --coordinator is given (one process per host)."""
  if not args.coordinator:
    return
  if args.num_processes is None or args.process_id is None:
    raise UserError("--coordinator needs --num-processes and --process-id")
  if not 0 <= args.process_id < args.num_processes:
    raise UserError(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
  jax.distributed.initialize(coordinator_address=args.coordinator,
                             num_processes=args.num_processes, process_id=args.process_id)


def _default_memory_budget() -> int:
  try:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
  except (ValueError, OSError, AttributeError):
    return 8 * 2**30


def train_or_load(name: str, spec: sweep.SweepSpec, args: argparse.Namespace) -> results.SweepResult:
  """Reuses `<out>/<name>-<spec digest>.npz` if present (unless --force), else trains it."""
  path = os.path.join(args.out, f"{name}-{args.backend}-{spec.digest()}.npz")
  if os.path.exists(path) and not args.force:
    try:
      res = results.load(path)
      log(args, f"[{name}] reusing {os.path.relpath(path)} (same spec and engine code; --force to re-train)")
      return res
    except results.ResultFileError as e:
      print(f"warning: {e}; training again", file=sys.stderr)
  init_distributed(args)
  devices = select_devices(args.backend)
  budget = int(args.max_memory * 2**30) if args.max_memory else _default_memory_budget()
  log(args, f"[{name}] training {spec.num_models:,} models x {spec.steps:,} steps "
            f"on {len(devices)} {args.backend} device(s)")
  res = sweep.run(spec, devices=devices, max_memory=budget,
                  progress=None if not args.quiet else False)
  if jax.process_index() != 0:  # every process holds the whole result; one writes it
    return res
  results.save(res, path)
  log(args, f"[{name}] {results.summary(res)}; wrote {os.path.relpath(path)}")
  return res


def save_figures(args: argparse.Namespace, name: str, figures: dict[str, Any]) -> list[str]:
  """Saves `{suffix: Figure}` as `<figures>/<name>_<suffix>.png` and lists the paths."""
  from superpos_jax import plotting
  written = []
  for suffix, fig in figures.items():
    written += plotting.save_figure(fig, os.path.join(args.figures, f"{name}_{suffix}"))
  for path in written:
    log(args, f"[{name}] wrote {os.path.relpath(path)}")
  return written


def log(args: argparse.Namespace, msg: str) -> None:
  if not getattr(args, "quiet", False):
    print(msg, flush=True)


def main_guard(main: Callable[[list[str] | None], Any]) -> Callable[[list[str] | None], int]:
  """Runs `main`, turning expected failures into one line on stderr and an exit status."""

  def guarded(argv: list[str] | None = None) -> int:
    try:
      main(argv)
      return 0
    except (UserError, sweep.SpecError, activations.UnknownActivationError,
            results.ResultFileError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    except OSError as e:
      print(f"error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
      return 1
    except KeyboardInterrupt:
      print("\ninterrupted: no partial result was written", file=sys.stderr)
      return 130

  return guarded




def experiment_main(name: str, doc: str, presets: dict[str, dict[str, Any]],
                    build_spec: Callable[[argparse.Namespace], sweep.SweepSpec],
                    figures: Callable[[results.SweepResult, argparse.Namespace], dict[str, Any]],
                    add_args: Callable[[argparse.ArgumentParser], None] | None = None):
  """The whole flow of one experiment script: flags -> spec -> sweep -> npz -> figures."""

  def main(argv: list[str] | None = None) -> None:
    parser = make_parser(doc, presets)
    if add_args:
      add_args(parser)
    args = parser.parse_args(argv)
    spec = build_spec(args)
    res = train_or_load(name, spec, args)
    if not args.no_plot and jax.process_index() == 0:
      save_figures(args, name, figures(res, args))

  return main_guard(main)
