"""Download the files of a dataset into ``<data dir>/<name>/``, verified and extracted.

Any URL scheme urllib handles works (https, http, ftp, file). Each file streams into
a temporary file beside its destination, its checksum is verified, then it is
renamed into place, so an interrupted or corrupt download never leaves a file
under the final name. Files already present with the right checksum are skipped.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from harness import __version__

from .catalogue import DatasetError, RemoteFile, dataset_dir, get

#: ``progress(filename, bytes_done, bytes_total_or_None)``: called with 0 when a file
#: starts, after every chunk, and once with done == total for a file already present.
ProgressHook = Callable[[str, int, int | None], None]

CHUNK = 1 << 20
TIMEOUT_S = 60


class ChecksumError(DatasetError):
    """A downloaded or extracted file does not have the published checksum."""


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def has_checksum(path: Path, algorithm: str, expected: str) -> bool:
    return path.is_file() and file_digest(path, algorithm) == expected.lower()


def _user_agent() -> str:
    return f"harness/{__version__} (+python urllib)"


def fetch_url(
    url: str, dest: Path, algorithm: str, expected: str, progress: ProgressHook | None = None
) -> None:
    """Stream ``url`` into ``dest`` via a temporary file; ChecksumError on mismatch."""
    request = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.new(algorithm, usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as r:
            length = r.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            if progress:
                progress(dest.name, 0, total)
            while chunk := r.read(CHUNK):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(dest.name, done, total)
        actual = h.hexdigest()
        if actual != expected.lower():
            raise ChecksumError(
                f"{dest.name}: {algorithm} mismatch: expected {expected}, got {actual} "
                "(file deleted)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(remote: RemoteFile, folder: Path, progress: ProgressHook | None = None) -> Path:
    """Make sure ``folder/remote.filename`` exists with the right checksum; download if not."""
    dest = folder / remote.filename
    algorithm, expected = remote.checksum
    if has_checksum(dest, algorithm, expected):
        if progress:
            size = dest.stat().st_size
            progress(dest.name, size, size)
        return dest
    failures = []
    for url in remote.urls:
        try:
            fetch_url(url, dest, algorithm, expected, progress)
            return dest
        except (OSError, ValueError) as exc:  # URLError is an OSError; bad URLs: ValueError
            failures.append(f"{url}: {exc}")
    raise DatasetError(f"could not download {remote.filename}:\n  " + "\n  ".join(failures))


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar archive into ``target``, refusing links, special files and any
    member whose path would land outside ``target``."""
    root = target.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                if not (m.isfile() or m.isdir()):
                    raise DatasetError(f"{archive}: refusing member {m.name!r} (not a plain file)")
                dest = (root / m.name).resolve()
                if dest != root and root not in dest.parents:
                    raise DatasetError(f"{archive}: member {m.name!r} would land outside {root}")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(root, members=members, **extra)  # members checked above
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"{archive}: cannot extract ({exc})") from exc


def _members_ok(remote: RemoteFile, folder: Path) -> bool:
    return all(has_checksum(folder / path, "md5", md5) for path, md5 in remote.members)


def extract(remote: RemoteFile, archive: Path, folder: Path) -> None:
    """Extract ``archive`` unless its members are already there intact; verify them after."""
    if _members_ok(remote, folder):
        return
    safe_extract(archive, folder)
    for path, md5 in remote.members:
        if not has_checksum(folder / path, "md5", md5):
            raise ChecksumError(f"{folder / path}: missing or wrong md5 after extracting {archive}")


def download(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    progress: ProgressHook | None = None,
) -> Path:
    """Fetch, verify and extract every file of dataset ``name``; returns its folder.

    ImageNet cannot be downloaded (its licence needs a registration): DatasetError
    with what to do instead.
    """
    info = get(name)
    folder = dataset_dir(name, data_dir)
    if not info.downloadable:
        raise DatasetError(
            f"{info.name} cannot be downloaded by the harness. {info.source} "
            f"Put it under {folder}: {info.layout}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for remote in info.files:
        path = fetch(remote, folder, progress)
        if remote.members:
            extract(remote, path, folder)
    return folder
