"""The shell commands of README.md and docs/*.md: extracted, parse-checked, the quick ones run.

  python docs/commands.py                 # every script command: exists, its parser accepts the flags
  python docs/commands.py --run-quick DIR # also run the commands marked quick, writing under DIR
  python docs/commands.py FILE.md ...     # only these files

A command is a line of a fenced `bash` block, or an inline code span that starts with
`python <folder>/<script>.py`. Every script command of a fenced block says how long it
runs, in its trailing comment: `quick: ~2 s` (the tests run it), `long: ~5 min`
(parse-checked only), or it runs a `--preset quick` / `--quick` variant (parse-checked;
each script's quick preset has its own test). Parse-checking imports the script, calls
its `main(argv)` and stops at its first `parse_args`: the flags are checked by the
script's own parser (types, choices, unknown flags), nothing trains.

Used by tests/test_docs.py; outside the package (nothing in `superpos_jax` imports it).
"""

import argparse
import contextlib
import dataclasses
import glob
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
INLINE = re.compile(r"`((?:[A-Z_]+=\S+ )*python3? (?:experiments|benchmarks|examples)/[^`]+)`")
MARK = re.compile(r"\b(quick|long): ")
QUICK_FLAGS = ("--quick",)


@dataclasses.dataclass
class Command:
  path: str       # the Markdown file, relative to the repository
  line: int       # 1-based line number in it
  text: str       # the command, without its comment
  comment: str    # the trailing comment ('' if none)
  fenced: bool    # from a fenced block (inline spans carry no mark)

  @property
  def where(self) -> str:
    return f"{self.path}:{self.line}"

  @property
  def mark(self) -> str | None:
    """'quick' or 'long' from the comment's `quick: ...` or `long: ...`, else None."""
    m = MARK.search(self.comment)
    return m[1] if m else None

  def script_calls(self) -> list[tuple[str, list[str]]]:
    """(script path, argv) of each `python <script>.py ...` part of the command."""
    calls = []
    for part in self.text.split("&&"):
      words = shlex.split(part)
      while words and re.match(r"^[A-Z_]+=", words[0]):   # PYTHONPATH=. python3 ...
        words = words[1:]
      if len(words) >= 2 and words[0] in ("python", "python3") and words[1].endswith(".py"):
        calls.append((words[1], words[2:]))
    return calls

  def is_quick_variant(self) -> bool:
    return any(("--preset" in argv and argv[argv.index("--preset") + 1:][:1] == ["quick"])
               or any(f in argv for f in QUICK_FLAGS) for _, argv in self.script_calls())


def markdown_files() -> list[str]:
  return ["README.md"] + sorted(os.path.relpath(p, REPO)
                                for p in glob.glob(os.path.join(REPO, "docs", "*.md")))


def fenced_blocks(text: str):
  """(language, [(line number, line)]) of each fenced code block."""
  lang, body = None, []
  for i, line in enumerate(text.split("\n"), 1):
    m = FENCE.match(line)
    if m and lang is None:
      lang, body = m[2], []
    elif line.strip() == "```" and lang is not None:
      yield lang, body
      lang = None
    elif lang is not None:
      body.append((i, line))


def without_code_blocks(text: str) -> str:
  """`text` with every fenced block's lines blanked (line numbers kept)."""
  lines = text.split("\n")
  for _, body in fenced_blocks(text):
    for i, _ in body:
      lines[i - 1] = ""
  return "\n".join(lines)


def commands(rel: str) -> list[Command]:
  with open(os.path.join(REPO, rel)) as f:
    text = f.read()
  out = []
  for lang, body in fenced_blocks(text):
    if lang not in ("bash", "sh", "shell"):
      continue
    for i, line in body:
      code, _, comment = line.partition(" #")
      if code.strip() and not code.lstrip().startswith("#"):
        out.append(Command(rel, i, code.strip(), comment.strip(), True))
  for i, line in enumerate(without_code_blocks(text).split("\n"), 1):
    for m in INLINE.finditer(line):
      out.append(Command(rel, i, m[1].strip(), "", False))
  return out


def all_commands() -> list[Command]:
  return [c for rel in markdown_files() for c in commands(rel)]


class _Parsed(BaseException):
  """Raised by the patched parse_args once a script's flags are parsed."""

  def __init__(self, parser):
    super().__init__()
    self.parser = parser


def _load(script: str):
  path = os.path.join(REPO, script)
  name = "_docs_" + re.sub(r"\W", "_", os.path.splitext(script)[0])
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def parse_check(script: str, argv: list[str]) -> tuple[str | None, list[str]]:
  """(error or None, the parser's option strings): does `script`'s parser accept argv?"""
  if not os.path.isfile(os.path.join(REPO, script)):
    return f"no such script {script}", []
  folder = os.path.dirname(os.path.join(REPO, script))
  for p in (folder, REPO):   # as `python script.py` would: its folder first, then the repo
    if p not in sys.path:
      sys.path.insert(0, p)
  original = argparse.ArgumentParser.parse_args

  def stop(self, args=None, namespace=None):
    original(self, args, namespace)
    raise _Parsed(self)

  err = io.StringIO()
  argparse.ArgumentParser.parse_args = stop
  try:
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      module = _load(script)
      if not hasattr(module, "main"):
        return f"{script} has no main(argv)", []
      module.main(argv)
    return f"{script} returned without parsing its flags", []
  except _Parsed as parsed:
    return None, sorted(parsed.parser._option_string_actions)
  except SystemExit as e:
    if e.code == 0 and "--help" in argv:
      return None, []
    return f"{script} {' '.join(argv)}: {err.getvalue().strip() or f'exit {e.code}'}", []
  finally:
    argparse.ArgumentParser.parse_args = original


def check(cmds: list[Command]) -> list[str]:
  """One line per problem: an unmarked long command, a missing script, a rejected flag."""
  problems = []
  for c in cmds:
    calls = c.script_calls()
    if c.fenced and calls and c.mark is None and not c.is_quick_variant():
      problems.append(f"{c.where}: `{c.text}` says neither quick: ... nor long: ...")
    for script, argv in calls:
      error, _ = parse_check(script, argv)
      if error:
        problems.append(f"{c.where}: {error}")
  return problems


def run_quick(cmds: list[Command], folder: str, timeout: float = 300) -> list[str]:
  """Runs each command marked quick: ..., its outputs redirected under `folder`."""
  problems = []
  for k, c in enumerate(c for c in cmds if c.mark == "quick"):
    for script, argv in c.script_calls():
      _, options = parse_check(script, argv)
      extra = []   # never the committed runs/ and figures/
      for flag, sub in (("--out", "runs"), ("--figures", "figures")):
        if flag in options:
          extra += [flag, os.path.join(folder, str(k), sub)]
      if "--quiet" in options:
        extra.append("--quiet")
      env = dict(os.environ, JAX_PLATFORMS="cpu",
                 PYTHONPATH=os.pathsep.join([REPO] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
      proc = subprocess.run([sys.executable, script, *argv, *extra], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=timeout)
      if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        problems.append(f"{c.where}: `{c.text}` exited {proc.returncode}: {tail}")
  return problems


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("files", nargs="*", help="Markdown files (default: README.md and docs/*.md)")
  p.add_argument("--run-quick", metavar="DIR",
                 help="also run the commands marked quick: ..., outputs under DIR")
  args = p.parse_args(argv)
  files = args.files or markdown_files()
  cmds = [c for rel in files for c in commands(rel)]
  problems = check(cmds)
  if args.run_quick and not problems:
    problems = run_quick(cmds, args.run_quick)
  for line in problems:
    print(line)
  n = sum(len(c.script_calls()) for c in cmds)
  print(f"{len(problems)} problem(s) in {n} script command(s) of {len(files)} files",
        file=sys.stderr)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
