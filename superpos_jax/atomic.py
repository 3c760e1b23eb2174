"""Files written whole or not at all: a temporary file in the same folder, then a rename;
the leftovers of a killed writer removed by the next writer in that folder.

Every result, summary and report the package writes goes through `write_atomically`.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import BinaryIO, Callable


# Temp files are named `.tmp-<pid>@<host>@<random>-<final name>` ('@' cannot occur in a
# host name), so a later writer in
# the same folder can tell a dead writer's leftovers from a concurrent writer's file.
TMP_PREFIX = ".tmp-"
# A temp file untouched this long is a leftover whoever wrote it (a write takes seconds).
STALE_AFTER_S = 3600.0


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OSError):
    return True  # exists, but owned by someone else
  return True


def remove_stale_temp_files(folder: str, now: float | None = None) -> list[str]:
  """Removes leftovers of killed writers in `folder` (SIGKILL leaves its temp file).

  A temp file goes if its writer ran on this host and is dead, or if nobody touched it for
  `STALE_AFTER_S`. A live writer's file (on this host, or recent elsewhere) is kept.
  Returns the paths removed.
  """
  now = time.time() if now is None else now
  host = socket.gethostname()
  removed = []
  try:
    names = os.listdir(folder)
  except OSError:
    return removed
  for name in names:
    if not name.startswith(TMP_PREFIX):
      continue
    path = os.path.join(folder, name)
    parts = name[len(TMP_PREFIX):].split("@", 2)  # [pid, host, rest]; old names: no '@'
    dead = (len(parts) == 3 and parts[1] == host and parts[0].isdigit()
            and not _pid_alive(int(parts[0])))
    try:
      if dead or now - os.stat(path).st_mtime > STALE_AFTER_S:
        os.unlink(path)
        removed.append(path)
    except OSError:
      pass  # removed meanwhile, or not ours to remove: not this writer's business
  return removed


def write_atomically(path: str, write: Callable[[BinaryIO], None]) -> str:
  """Calls `write(f)` on a temporary file in `path`'s folder, then renames it to `path`.

  A crash, Ctrl-C or SIGTERM (see `cli.run`) mid-write leaves no partial file under
  `path` (the temporary file is removed; an existing `path` stays as it was); a SIGKILL's
  leftover is removed by the next write in the folder (`remove_stale_temp_files`).
  An OSError (full disk, no permission) always names `path`. Returns `path`.
  """
  folder = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}@{socket.gethostname()}@"
                             f"{secrets.token_hex(4)}-{os.path.basename(path)}")
  try:
    os.makedirs(folder, exist_ok=True)
    remove_stale_temp_files(folder)
    # A hand-made temp name (not mkstemp) so the file gets the umask's permissions.
    with open(tmp, "xb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError) and e.filename != path:
      # e.g. ENOSPC from a write has no file name at all: say which file failed.
      raise type(e)(e.errno, e.strerror or str(e), path) from e
    raise
  return path
