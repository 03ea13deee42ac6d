"""Whether a pid is a running process, and when it started: from ``/proc``, with a fallback off Linux."""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), None when the pid is gone.

    Raises OSError other than FileNotFoundError when there is no ``/proc`` to read.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name is in parentheses and may hold spaces: split after its last ')'.
            return stat.read().rsplit(b")", 1)[-1].split()
    except FileNotFoundError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        fields = _stat_fields(pid)
    except OSError:  # no /proc (not Linux): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by another user
            return True
        return True
    return fields is not None and fields[:1] not in ([b"Z"], [b"X"])


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22); None when it is not
    running or cannot be read (no ``/proc``).

    A pid and its start time name one process: a later process that reuses the pid has another start time.
    """
    try:
        fields = _stat_fields(pid)
    except OSError:
        return None
    # fields[0] is field 3 (state): field 22 (starttime) is fields[19].
    if fields is None or len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None
