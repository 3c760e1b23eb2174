"""The failures the command line reports as one line and an exit status (`cli.run`):
defined in this leaf module so that every layer can raise them."""

from __future__ import annotations


def first_line(e: BaseException) -> str:
  """`Type: first line of the message`: an exception from user code, told in one line."""
  return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


class UserError(Exception):
  """Bad input from the command line: printed as one line, exit status 2."""


class SaveError(Exception):
  """Training finished but the result could not be written where asked (exit status 1);
  the message says where it was rescued to."""


class DivergedError(Exception):
  """Every model of a run diverged (exit status 3); the result was still saved."""


class Terminated(BaseException):
  """Raised in the main thread on SIGTERM, so cleanup runs as for Ctrl-C."""
