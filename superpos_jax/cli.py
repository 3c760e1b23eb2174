"""What every experiment script shares on the command line: flags, their checks, the
preset's spec, the host set-up and the error guard.

A script's flow is linear and reads top to bottom:

    def main(argv=None):
      args = PARSER.parse_args(argv)
      cli.configure_host(args.backend, compile_cache=not args.no_compile_cache)  # first
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
import os
import signal
import sys
import threading
from typing import Any, Callable

from superpos_jax import activations, families, results
from superpos_jax.errors import DivergedError, SaveError, Terminated, UserError
from superpos_jax.host import BACKENDS, configure_host, xla_defaults  # noqa: F401 (the scripts' names)
from superpos_jax.inits import INITS
from superpos_jax.plan import PRECISIONS
from superpos_jax.results import SEED_RULES
from superpos_jax.spec import MAX_AXIS_LENGTH, MAX_INT, RNG_MODES, SpecError, SweepSpec

def _checkout() -> str | None:
  """The superpos_jax checkout this package runs from (its pyproject.toml names the
  project), or None for an installed package."""
  top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    with open(os.path.join(top, "pyproject.toml")) as f:
      return top if 'name = "superpos_jax"' in f.read() else None
  except OSError:
    return None


# Where runs/ and figures/ go by default: the checkout, or, for an installed package
# (no checkout), the current folder.
CHECKOUT = _checkout()
REPO = CHECKOUT or os.getcwd()
PAPER = "paper"  # the preset whose figures are the committed ones in figures/
# Exit statuses besides 0, 1 (I/O error) and 2 (bad input).
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process killed by it


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


def int_list(text: str) -> tuple[int, ...]:
  """Comma-separated positive integers (e.g. --widths), each as `positive_int` checks it."""
  return tuple(positive_int(v.strip()) for v in text.split(",") if v.strip())


def chunk_size(text: str) -> int | str:
  """--chunk-size: a positive integer, or "auto" (measure a few layouts, `autotune`)."""
  return "auto" if text.strip().lower() == "auto" else positive_int(text)


def axis_length(text: str) -> int:
  """Values of one grid axis (e.g. --seeds): bounded before any tuple of them is built."""
  return positive_int(text, MAX_AXIS_LENGTH)


class ArgumentParser(argparse.ArgumentParser):
  """argparse, but a bad flag prints one line (not the whole usage block) and exits 2,
  and the parsed flags say whether they make a custom run (`changed`).

  Flags added with `add_run_argument` say where and how a run executes (folders,
  devices, checkpoints, hosts) and never change its numbers or figures; every other flag
  given with a value other than its default makes the run custom (so a new flag counts as
  custom unless declared otherwise): `args.changed` lists them, and `figures_dir` keeps
  a custom run out of the committed figures.
  """

  def __init__(self, **kwargs):
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    super().__init__(**kwargs)
    self.run_dests = {"help", "preset"}
    self._run_group = None

  def add_run_argument(self, *args, **kwargs):
    """A flag of where and how to run, which never changes numbers or figures."""
    if self._run_group is None:
      self._run_group = self.add_argument_group(
          "where and how to run (these never change a result's numbers or figures)")
    action = self._run_group.add_argument(*args, **kwargs)
    self.run_dests.add(action.dest)
    return action

  def parse_known_args(self, args=None, namespace=None):
    parsed, rest = super().parse_known_args(args, namespace)
    parsed.changed = tuple(sorted(
        a.dest for a in self._actions
        if a.dest not in self.run_dests and a.dest != argparse.SUPPRESS
        and getattr(parsed, a.dest, None) != a.default))
    return parsed, rest

  def error(self, message):
    self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# long: one flat list of the flags every experiment takes, each with its help
def experiment_parser(doc: str, presets: dict[str, dict[str, Any]]) -> ArgumentParser:
  """Parser with the flags every training experiment takes; `doc` is the script's docstring."""
  p = ArgumentParser(description=doc,
                     epilog="activations:\n  " + activations.describe().replace("\n", "\n  "))
  p.add_argument("--preset", choices=sorted(presets), default=PAPER,
                 help="paper: the study's settings (default); quick: same code path in seconds")
  p.add_run_argument("--backend", choices=BACKENDS, default="cpu", help="JAX backend (default cpu)")
  p.add_run_argument("--out", default=os.path.join(REPO, "runs"),
                 help="folder for result .npz files (default: runs/)")
  p.add_run_argument("--figures", default=None,
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
  optimizers = "; ".join(f"{k}: {v}" for k, v in families.descriptions("optimizer").items())
  p.add_argument("--optimizer", choices=families.names("optimizer"),  # argparse formats "%"
                 help="optimiser (default from preset): " + optimizers.replace("%", "%%"))
  p.add_argument("--init-rng", choices=RNG_MODES,
                 help="per_point: every grid point starts from its own W (default); shared: "
                      "every point of a seed starts from the same W")
  p.add_argument("--seed-rule", choices=SEED_RULES, default=SEED_RULES[0],
                 help="how figures collapse seeds: lowest eval loss (default) or mean without the worst")
  p.add_run_argument("--max-memory", type=positive_float, default=None,
                 help="memory budget in GiB (default: the accelerator's memory, or half "
                      "the host memory on CPU); the grid is trained in smaller chunks to fit")
  p.add_run_argument("--chunk-size", type=chunk_size, default=None,
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
  p.add_run_argument("--checkpoint-every", type=non_negative_float, default=None, metavar="SECONDS",
                 help="checkpoint the whole grid's training state at most every SECONDS of "
                      "wall time (default 300, for runs above a few seconds of work; given, "
                      "for any run; 0: after every stage), in <out>/<result "
                      "name>.ckpt/; rerunning the same command resumes from the latest "
                      "checkpoint with the same numbers; removed once the result is saved")
  p.add_run_argument("--no-checkpoint", action="store_true",
                 help="no checkpoints: the grid trains in one call (a killed run starts over)")
  p.add_run_argument("--heartbeat-timeout", type=positive_int, default=None, metavar="SECONDS",
                 help="multi-host: seconds without a heartbeat before JAX's coordination "
                      "service declares a process dead and aborts the others (JAX's default 100)")
  p.add_run_argument("--coordinator", help="multi-host: address:port of process 0 "
                 "(with --num-processes and --process-id; see README)")
  p.add_run_argument("--num-processes", type=positive_int, help="multi-host: processes in all")
  p.add_run_argument("--process-id", type=int, help="multi-host: this process's index")
  p.add_run_argument("--no-compile-cache", action="store_true",
                     help="compile every program afresh instead of loading it from JAX's "
                          "persistent compilation cache (~/.cache/superpos_jax/compiled, or "
                          "$SUPERPOS_JAX_COMPILE_CACHE; =off turns it off for every run)")
  p.add_run_argument("--force", action="store_true", help="re-train even if a matching result exists")
  p.add_run_argument("--no-plot", action="store_true", help="only train and save the .npz")
  p.add_run_argument("--explore", action="store_true",
                     help="with the figures, also write the result's explorer page "
                          "<figures>/<name>_explorer.html (interactive, offline; docs/explorer.md)")
  p.add_run_argument("--quiet", action="store_true", help="no progress display")
  return p


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
                            ("--process-id", args.process_id),
                            ("--heartbeat-timeout", getattr(args, "heartbeat_timeout", None)))
             if v is not None]
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
                      ("weight_decays", "weight_decays"), ("model", "model"), ("data", "data"),
                      ("optimizer", "optimizer")):
    if getattr(args, flag) is not None:
      fields[field] = getattr(args, flag)
  return SweepSpec(**fields)


def figures_dir(args: argparse.Namespace, custom: bool = False) -> str:
  """Where figures go: `--figures`, else figures/ for the paper preset as it stands and
  figures/<preset>/ (figures/paper-custom/ for an overridden paper run) otherwise, so that
  only a deliberate paper-preset run replaces the committed figures."""
  if args.figures is not None:
    return args.figures
  custom = custom or bool(getattr(args, "changed", ()))
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
