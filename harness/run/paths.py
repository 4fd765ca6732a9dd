"""Output locations checked before any work starts: one clear line (UsageError, exit 2).

A folder the harness will write into must be a folder (not a file), creatable, writable
(a read-only filesystem or a folder without write permission), and short enough for the
files the harness puts under it. Writability is probed by creating and removing a
temporary file in the nearest existing folder, so read-only mounts are caught even for
root, which ``os.access`` would not do. Nothing is left behind.

A file the harness writes (``-o FILE`` of report, export, compare, onnx) never replaces
a results store: not the store the command reads (nor its ``-wal``, ``-shm`` or
``-journal`` file, compared by resolved path and by inode) and no other SQLite database
(caught by its header), whatever the options. Any other existing file that is not
empty is replaced only with ``--force``: the harness cannot tell its own earlier output
from a file it did not create, so it asks.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from harness.errors import UsageError

# What the harness appends below an output folder: <run-id>/repeat-N/events.jsonl
_RESERVE = 160


def _limits(folder: Path) -> tuple[int, int]:
    try:
        return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        return 255, 4096


def _existing_ancestor(path: Path, what: str, shown: str) -> Path:
    current = path
    while True:
        try:
            os.stat(current)
            return current
        except FileNotFoundError:
            pass
        except NotADirectoryError:  # an ancestor is a file: report it
            pass
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UsageError(
                    f"{what} {shown}: {current} is a loop of symbolic links; give a real folder"
                ) from None
            if exc.errno != errno.ENAMETOOLONG:
                raise
        if current.parent == current:
            return current
        current = current.parent


def _probe(folder: Path, what: str, shown: str) -> None:
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".harness-write-check-")
    except OSError as exc:
        reason = "read-only filesystem" if exc.errno == errno.EROFS else exc.strerror
        raise UsageError(
            f"{what} {shown}: cannot write in {folder} ({reason}); give a writable folder"
        ) from None
    os.close(fd)
    os.unlink(name)


def check_writable_dir(path: str | os.PathLike[str], what: str, reserve: int = _RESERVE) -> None:
    """UsageError unless ``path`` is, or can be made as, a folder this process can write.

    ``what`` names the option (``--output-dir``); ``reserve``: characters the harness
    will add below it."""
    shown = str(path)
    target = Path(os.path.abspath(path))
    ancestor = _existing_ancestor(target, what, shown)
    name_max, path_max = _limits(ancestor if ancestor.is_dir() else ancestor.parent)
    longest = max((len(os.fsencode(p)) for p in target.parts), default=0)
    if longest > name_max or len(os.fsencode(str(target))) + reserve > path_max:
        raise UsageError(
            f"{what} {shown}: the path is too long (names up to {name_max} bytes, paths up "
            f"to {path_max - reserve} bytes here); give a shorter one"
        )
    if target.exists() and not target.is_dir():
        raise UsageError(f"{what} {shown} is a file, not a folder; give a folder")
    if target.is_symlink() and not target.exists():
        raise UsageError(f"{what} {shown} is a broken symbolic link; give a folder")
    if not ancestor.is_dir():
        raise UsageError(f"{what} {shown}: {ancestor} is a file, so no folder can be made there")
    _probe(ancestor, what, shown)


def check_writable_file(path: str | os.PathLike[str], what: str) -> None:
    """UsageError unless a file can be written at ``path`` (not a folder, parent writable)."""
    shown = str(path)
    target = Path(os.path.abspath(path))
    if target.is_dir():
        raise UsageError(f"{what} {shown} is a folder; give a file name, e.g. {target / 'out'}")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{what} {shown}: the file is not writable")
    check_writable_dir(target.parent, what, reserve=len(os.fsencode(target.name)))


# A full disk (issue 28): every command says so in one line naming the path, exit 2.


def is_out_of_space(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT from the OS, or SQLite's "database or disk is full"."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "disk is full" in str(exc)


def no_space_message(exc: BaseException, where: str | os.PathLike[str] | None) -> str:
    """One line: the path the write failed on (the OS's, else ``where``) and what to do."""
    path = getattr(exc, "filename", None) or where or "the output folder"
    return (
        f"no space left on device: {path}; what was measured is kept: free some space and "
        "start again (the next start takes into the store what a run left on disk)"
    )


SQLITE_HEADER = b"SQLite format 3\x00"
_STORE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # a hard link
    except OSError:
        return False


def check_not_clobbering(
    path: str | os.PathLike[str],
    what: str,
    *,
    force: bool,
    stores: tuple[str | os.PathLike[str], ...] = (),
) -> None:
    """UsageError unless writing ``path`` destroys nothing: never one of ``stores`` (or
    its companions) nor any SQLite database; an existing file that is not empty only
    with ``force``."""
    shown = str(path)
    target = Path(os.path.abspath(path))
    for store in stores:
        base = Path(os.path.abspath(store))
        if base.is_dir():
            base = base / "results.sqlite"
        for suffix in _STORE_COMPANIONS:
            if _same(target, base.with_name(base.name + suffix)):
                whose = f"the results store {base}" + (f" ({suffix[1:]} file)" if suffix else "")
                raise UsageError(
                    f"{what} {shown} is {whose}; the harness never writes over it: "
                    "give another file"
                )
    try:
        if not target.is_file():
            return  # absent, a folder (check_writable_file says so) or a device
        with open(target, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        size = target.stat().st_size
    except OSError:
        return  # unreadable: check_writable_file reports what matters
    if header == SQLITE_HEADER:
        raise UsageError(
            f"{what} {shown} is a SQLite database (a results store?); the harness never "
            "writes over one: give another file"
        )
    if size and not force:
        raise UsageError(f"{what} {shown} exists: give --force to replace it, or another file")
