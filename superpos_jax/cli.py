"""What every experiment script shares on the command line: flags, their checks, the
preset's spec, the host set-up and the error guard.

A script's flow is linear and reads top to bottom:

    def main(argv=None):
      args = PARSER.parse_args(argv)
      cli.configure_host(args.backend)          # first: host devices, XLA flags
      result = launch.train_or_load(NAME, build_spec(args), args)
      if not args.no_plot:
        launch.save_outputs(args, NAME, result, figures(result, args))

    if __name__ == "__main__":
      sys.exit(cli.run(main))

`cli.run` turns expected failures into one line on stderr and an exit status; `launch`
does what happens between a spec and its result file.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import mmap
import os
import signal
import sys
import threading
from importlib import metadata
from typing import Any, Callable


from superpos_jax import activations, families, results
from superpos_jax.inits import INITS
from superpos_jax.plan import PRECISIONS
from superpos_jax.results import SEED_RULES
from superpos_jax.spec import MAX_AXIS_LENGTH, MAX_INT, RNG_MODES, SpecError, SweepSpec

BACKENDS = ("cpu", "gpu", "tpu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = "paper"  # the preset whose figures are the committed ones in figures/
# Exit statuses besides 0, 1 (I/O error) and 2 (bad input).
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process killed by it


class UserError(Exception):
  """Bad input from the command line: printed as one line, exit status 2."""


class SaveError(Exception):
  """Training finished but the result could not be written where asked (exit status 1);
  the message says where it was rescued to."""


class DivergedError(Exception):
  """Every model of a run diverged (exit status 3); the result was still saved."""


class Terminated(BaseException):
  """Raised in the main thread on SIGTERM, so cleanup runs as for Ctrl-C."""


def _jaxlib_version() -> tuple[int, ...]:
  try:
    return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return (0,)


@functools.lru_cache(maxsize=None)
def xla_knows(flag: str) -> bool:
  """Whether the installed jaxlib's XLA defines `flag`: its name is in one of jaxlib's
  shared libraries (XLA aborts at start-up on a flag it does not know, so a flag is set
  only where this holds)."""
  try:
    folder = os.path.dirname(importlib.util.find_spec("jaxlib").origin)
  except (AttributeError, ImportError, TypeError, ValueError):
    return False
  needle = flag.encode()
  for root, _, files in os.walk(folder):
    for name in files:
      if ".so" not in name:
        continue
      try:
        with open(os.path.join(root, name), "rb") as f, \
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
          if data.find(needle) >= 0:
            return True
      except (OSError, ValueError):  # an empty or unreadable file
        continue
  return False


def xla_defaults(backend: str = "cpu") -> dict[str, str]:
  """XLA flags the scripts set for `backend` unless the user already did: CPU flags only,
  and each only where the running jaxlib knows it (`xla_knows`); none for GPU or TPU.

  One XLA CPU device per core, so the sweep's `shard_map` keeps every core busy (measured
  ~1.5-3x on the 2-core CPU); and XLA CPU's YNNPACK library kept off reductions: with
  several host devices those leaked memory on every execution (a 33,600-model,
  10,000-step phase diagram grew to 24 GB and was killed; with the flag, flat). Dots stay
  on YNNPACK, and `loss.batch_loss` writes its sums as dots.
  """
  if backend != "cpu":
    return {}
  flags = {"xla_force_host_platform_device_count": str(os.cpu_count() or 1)}
  if _jaxlib_version() >= (0, 10):  # where it was measured; older XLA may not know the flag
    flags["xla_cpu_experimental_ynn_fusion_type"] = "-reduce"
  return {flag: value for flag, value in flags.items() if xla_knows(flag)}


def configure_host(backend: str = "cpu") -> None:
  """Sets the XLA flags of `xla_defaults(backend)` (a flag already in XLA_FLAGS is left
  as set): host device splitting and YNNPACK settings for CPU runs, nothing otherwise.

  Call it first, before anything touches a JAX device: XLA reads its flags when the
  backend starts, and ignores later changes (then the run simply uses the devices it has).
  """
  for flag, value in xla_defaults(backend).items():
    if flag not in os.environ.get("XLA_FLAGS", ""):
      os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{flag}={value}".strip()


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


def non_negative_float(text: str) -> float:
  try:
    v = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}") from None
  if not (v >= 0 and v < float("inf")):
    raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text}")
  return v


def positive_int(text: str, most: int = MAX_INT) -> int:
  """A flag's integer in [1, most]; the default bound is int32's (step counters, sizes)."""
  try:
    v = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if v < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
  if v > most:
    raise argparse.ArgumentTypeError(f"expected a positive integer of at most {most:,}, got {v}")
  return v


def chunk_size(text: str) -> int | str:
  """--chunk-size: a positive integer, or "auto" (measure a few layouts, `autotune`)."""
  return "auto" if text.strip().lower() == "auto" else positive_int(text)


def axis_length(text: str) -> int:
  """Values of one grid axis (e.g. --seeds): bounded before any tuple of them is built."""
  return positive_int(text, MAX_AXIS_LENGTH)


class ArgumentParser(argparse.ArgumentParser):
  """argparse, but a bad flag prints one line (not the whole usage block) and exits 2."""

  def __init__(self, **kwargs):
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    super().__init__(**kwargs)

  def error(self, message):
    self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def experiment_parser(doc: str, presets: dict[str, dict[str, Any]]) -> ArgumentParser:
  """Parser with the flags every training experiment takes; `doc` is the script's docstring."""
  p = ArgumentParser(description=doc,
                     epilog="activations:\n  " + activations.describe().replace("\n", "\n  "))
  p.add_argument("--preset", choices=sorted(presets), default=PAPER,
                 help="paper: the study's settings (default); quick: same code path in seconds")
  p.add_argument("--backend", choices=BACKENDS, default="cpu", help="JAX backend (default cpu)")
  p.add_argument("--out", default=os.path.join(REPO, "runs"),
                 help="folder for result .npz files (default: runs/)")
  p.add_argument("--figures", default=None,
                 help="folder for figures (default: figures/ for the paper preset as it "
                      "stands, figures/<preset>/ for any other preset or overridden setting)")
  p.add_argument("--steps", type=positive_int, help="training steps (default from preset)")
  p.add_argument("--seeds", type=axis_length,
                 help=f"seeds per grid point, at most {MAX_AXIS_LENGTH:,} (default from preset)")
  p.add_argument("--activations", type=name_list,
                 help="comma-separated activation names (default: the study's seven)")
  p.add_argument("--densities", type=float_list, help="comma-separated densities 1-S in (0, 1]")
  p.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
  p.add_argument("--batch-size", type=positive_int, help="examples per step (default 1024)")
  p.add_argument("--init", choices=INITS, help=f"weight init (default {INITS[0]})")
  p.add_argument("--init-scales", type=float_list,
                 help="comma-separated init scales α, W₀ = α·draw (an axis; default 1)")
  p.add_argument("--weight-decays", type=float_list,
                 help="comma-separated AdamW weight decays (an axis; default 0.01)")
  # Choices read from the registries when the parser is built (register first).
  p.add_argument("--model", choices=families.names("model"),
                 help="model family (default from preset): " + "; ".join(
                     f"{k}: {v}" for k, v in families.descriptions("model").items()))
  p.add_argument("--data", choices=families.names("data"),
                 help="data family (default from preset): " + ", ".join(families.names("data")))
  p.add_argument("--init-rng", choices=RNG_MODES,
                 help="per_point: every grid point starts from its own W (default); shared: "
                      "every point of a seed starts from the same W")
  p.add_argument("--seed-rule", choices=SEED_RULES, default=SEED_RULES[0],
                 help="how figures collapse seeds: lowest eval loss (default) or mean without the worst")
  p.add_argument("--max-memory", type=positive_float, default=None,
                 help="memory budget in GiB (default: the accelerator's memory, or half "
                      "the host memory on CPU); the grid is trained in smaller chunks to fit")
  p.add_argument("--chunk-size", type=chunk_size, default=None,
                 help="models trained together per scan: a number, or auto (time a few "
                      "layouts on the devices at hand and keep the fastest, remembered per "
                      "device and grid); default: the device kind's rule (cache-sized "
                      "chunks on CPU, one chunk per device on GPU/TPU). Numbers do not "
                      "depend on it beyond float rounding")
  p.add_argument("--matmul-precision", choices=PRECISIONS, default=PRECISIONS[0],
                 help="precision of every matrix product: float32 (default, exact on every "
                      "backend), or the faster tensorfloat32 / bfloat16 / default (the "
                      "backend's own; TF32 on recent NVIDIA GPUs, bfloat16 passes on TPU) "
                      "that move the numbers; recorded in the result")
  p.add_argument("--checkpoint-every", type=non_negative_float, default=None, metavar="SECONDS",
                 help="checkpoint the whole grid's training state at most every SECONDS of "
                      "wall time (default 300, for runs above a few seconds of work; given, "
                      "for any run; 0: after every stage), in <out>/<result "
                      "name>.ckpt/; rerunning the same command resumes from the latest "
                      "checkpoint with the same numbers; removed once the result is saved")
  p.add_argument("--no-checkpoint", action="store_true",
                 help="no checkpoints: the grid trains in one call (a killed run starts over)")
  p.add_argument("--heartbeat-timeout", type=positive_int, default=None, metavar="SECONDS",
                 help="multi-host: seconds without a heartbeat before JAX's coordination "
                      "service declares a process dead and aborts the others (JAX's default 100)")
  p.add_argument("--coordinator", help="multi-host: address:port of process 0 "
                 "(with --num-processes and --process-id; see README)")
  p.add_argument("--num-processes", type=positive_int, help="multi-host: processes in all")
  p.add_argument("--process-id", type=int, help="multi-host: this process's index")
  p.add_argument("--force", action="store_true", help="re-train even if a matching result exists")
  p.add_argument("--no-plot", action="store_true", help="only train and save the .npz")
  p.add_argument("--explore", action="store_true",
                 help="with the figures, also write the result's explorer page "
                      "<figures>/<name>_explorer.html (interactive, offline; docs/explorer.md)")
  p.add_argument("--quiet", action="store_true", help="no progress display")
  return p


# Flags of `experiment_parser` that change the spec: any of them makes a custom run.
SPEC_FLAGS = ("steps", "seeds", "activations", "densities", "lr", "batch_size", "init",
              "init_rng")


def check_flags(args: argparse.Namespace) -> None:
  """The checks of `experiment_parser`'s flags that argparse cannot make on one flag alone
  (conflicts, empty paths, the multi-host set); touches no file, device or network."""
  if args.out == "":
    raise UserError("--out must name a folder, got ''")
  if getattr(args, "figures", None) == "":
    raise UserError("--figures must name a folder, got ''")
  if args.densities is not None and not args.densities:
    raise UserError("--densities needs at least one value")
  if args.activations is not None and not args.activations:
    raise UserError("--activations needs at least one name")
  if getattr(args, "no_checkpoint", False) and getattr(args, "checkpoint_every", None) is not None:
    raise UserError("--checkpoint-every and --no-checkpoint contradict each other: give one")
  if not args.coordinator:
    given = [f for f, v in (("--num-processes", args.num_processes),
                            ("--process-id", args.process_id)) if v is not None]
    if given:
      raise UserError(f"{' and '.join(given)} given without --coordinator HOST:PORT (multi-host runs only)")
    return
  if args.num_processes is None or args.process_id is None:
    raise UserError("--coordinator needs --num-processes and --process-id")
  if not 0 <= args.process_id < args.num_processes:
    raise UserError(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
  host, _, port = args.coordinator.rpartition(":")
  if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise UserError(f"--coordinator must be HOST:PORT with a port in 1..65535, "
                    f"got {args.coordinator!r}")


def spec_from_args(args: argparse.Namespace, preset: dict[str, Any]) -> SweepSpec:
  """The preset's spec fields, overridden by whichever flags were given (flags checked
  first, see `check_flags`)."""
  check_flags(args)
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
  if args.init_rng is not None:
    fields["init_rng"] = args.init_rng
  for flag, field in (("init", "init"), ("init_scales", "init_scales"),
                      ("weight_decays", "weight_decays"), ("model", "model"), ("data", "data")):
    if getattr(args, flag) is not None:
      fields[field] = getattr(args, flag)
  return SweepSpec(**fields)


def figures_dir(args: argparse.Namespace, custom: bool = False) -> str:
  """Where figures go: `--figures`, else figures/ for the paper preset as it stands and
  figures/<preset>/ (figures/paper-custom/ for an overridden paper run) otherwise, so that
  only a deliberate paper-preset run replaces the committed figures."""
  if args.figures is not None:
    return args.figures
  custom = (custom or any(getattr(args, f, None) is not None for f in SPEC_FLAGS)
            or getattr(args, "matmul_precision", "float32") != "float32")
  if args.preset == PAPER and not custom:
    return os.path.join(REPO, "figures")
  return os.path.join(REPO, "figures", f"{args.preset}-custom" if args.preset == PAPER else args.preset)


def log(args: argparse.Namespace, msg: str) -> None:
  if not getattr(args, "quiet", False):
    print(msg, flush=True)


def _terminate(signum, frame):
  raise Terminated()


def run(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> int:
  """Runs `main(argv)`, turning expected failures into one line on stderr and a status:
  2 bad input, 1 an I/O error (or a result saved only to a fallback), 3 every model
  diverged, 130 Ctrl-C, 143 SIGTERM (handled like Ctrl-C: temp files removed)."""
  main_thread = threading.current_thread() is threading.main_thread()
  previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
  try:
    main(argv)
    return 0
  except (UserError, SpecError, activations.UnknownActivationError,
          results.ResultFileError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except SaveError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except DivergedError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_DIVERGED
  except OSError as e:
    where = f": {e.filename}" if e.filename else ""
    print(f"error: {e.strerror or e}{where}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("\ninterrupted: no partial result was written", file=sys.stderr)
    return EXIT_INTERRUPTED
  except Terminated:
    print("\nterminated (SIGTERM): no partial result was written", file=sys.stderr)
    return EXIT_TERMINATED
  finally:
    if main_thread and previous is not None:
      signal.signal(signal.SIGTERM, previous)
