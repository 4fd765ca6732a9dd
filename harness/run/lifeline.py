"""Workers die with their orchestrator, even after ``kill -9``.

Three layers:

- the worker asks Linux for a parent-death signal (``prctl(PR_SET_PDEATHSIG)``): it is
  killed the moment the process that started it dies (the orchestrator, or a launcher);
- the worker watches the orchestrator (pid and start time, from ``HARNESS_ORCHESTRATOR``)
  and ends its own process group when it is gone, which covers launcher chains (a
  launcher whose own parent death would otherwise go unnoticed);
- the next start in the same output directory finds workers whose orchestrator is gone
  (:func:`end_stale_workers`, by ``HARNESS_OUTPUT_DIR`` in their environment) and ends
  them, naming each.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

ORCHESTRATOR_ENV = "HARNESS_ORCHESTRATOR"  # "<pid>:<start ticks>:<process group>"
OUTPUT_ENV = "HARNESS_OUTPUT_DIR"  # the absolute output directory of the run
_PR_SET_PDEATHSIG = 1


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def orchestrator_env(output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Variables the orchestrator gives its workers so they can tell when it is gone."""
    pid = os.getpid()
    return {
        ORCHESTRATOR_ENV: f"{pid}:{_start_ticks(pid) or ''}:{os.getpgrp()}",
        OUTPUT_ENV: str(Path(output_dir).resolve()),
    }


def _signalable(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0; one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _zombie(pid: int) -> bool:
    """Whether ``pid`` is a zombie: dead, its parent has not reaped it yet (False where
    /proc cannot tell)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        return state[state.rfind(")") + 2 :].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _alive(pid: int, ticks: str) -> bool:
    if not _signalable(pid):
        return False
    if ticks and sys.platform.startswith("linux"):
        now = _start_ticks(pid)
        if now is None or now != ticks:  # gone, or its pid was reused
            return False
        return not _zombie(pid)  # a zombie is dead too
    return True


def _parse(value: str) -> tuple[int, str, int] | None:
    parts = value.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[0]), parts[1], int(parts[2])


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Linux: ``sig`` is sent to this process when its parent dies. False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die(own_group: bool) -> None:
    """Ends this worker (and its process group when it is its own) at once."""
    try:
        if own_group:
            os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(137)


def guard_worker(poll_s: float = 0.5) -> None:
    """Called first thing in a worker: die with the orchestrator.

    Does nothing when the worker was not started by an orchestrator (no
    ``HARNESS_ORCHESTRATOR``), e.g. a worker run by hand or by a test."""
    parsed = _parse(os.environ.get(ORCHESTRATOR_ENV, ""))
    if parsed is None:
        return
    pid, ticks, group = parsed
    if os.getppid() == pid:
        # Started by the orchestrator itself (from its main thread): the kernel ends us
        # with it. Processes a launcher started rely on the watch below: their
        # parent's threads may come and go, and the signal follows the forking thread.
        set_parent_death_signal()
    # Ending our own process group is safe only when it is not the orchestrator's.
    own_group = os.getpgrp() != group
    if not _alive(pid, ticks):  # it died before we could ask for the signal
        _die(own_group)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if not _alive(pid, ticks):
                _die(own_group)

    threading.Thread(target=watch, name="harness-lifeline", daemon=True).start()


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key in (ORCHESTRATOR_ENV.encode(), OUTPUT_ENV.encode()):
            out[key.decode()] = value.decode(errors="replace")
    return out


def stale_workers(output_dir: str | os.PathLike[str]) -> list[int]:
    """Pids of processes started for ``output_dir`` whose orchestrator is gone (Linux)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    target = str(Path(output_dir).resolve())
    me = os.getpid()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        env = _environ(int(entry.name))
        if env.get(OUTPUT_ENV) != target:
            continue
        parsed = _parse(env.get(ORCHESTRATOR_ENV, ""))
        if parsed is None or parsed[0] == me or _alive(parsed[0], parsed[1]):
            continue
        found.append(int(entry.name))
    return sorted(found)


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p)[:120]


def end_stale_workers(output_dir: str | os.PathLike[str], grace_s: float = 5.0) -> list[str]:
    """Ends the workers a killed harness left running for ``output_dir``.

    Returns one line per process: what it was and whether it was ended (or why not)."""
    notes = []
    pids = stale_workers(output_dir)
    for pid in pids:
        what = f"pid {pid} ({_command(pid)})"
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        except PermissionError:
            notes.append(f"stale worker {what} of {output_dir} could not be ended: not ours")
            continue
        notes.append(f"ended stale worker {what} left by a harness that was killed")
    deadline = time.monotonic() + grace_s
    for pid in pids:
        while time.monotonic() < deadline and _exists(pid):
            time.sleep(0.05)
        if _exists(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return notes


def _exists(pid: int) -> bool:
    # a zombie of ours (or of init, soon reaped) is gone
    return _signalable(pid) and not _zombie(pid)


def is_alive(token: str) -> bool:
    """Whether the orchestrator named by an ``orchestrator_env`` token ("pid:ticks:group")
    is still running on this host (false for a malformed token)."""
    parsed = _parse(token)
    return parsed is not None and _alive(parsed[0], parsed[1])
