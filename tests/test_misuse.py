"""Misuse of the command line (issue 28, items 1, 4, 5 and 9): every case exits with the
code given and prints the words given; a usage error is one line, never a traceback.

A case is one line of ``CASES``: (arguments, exit code, words in the output). ``{tmp}``
is the test's folder, which holds a results store (``logs/results.sqlite``), another
store (``other.sqlite``), a file of the user's (``mine.txt``), an empty file, links to
the store and a loop of symbolic links. In-process calls of ``harness.cli.main.main``:
no case starts a worker.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.cli.main import main

RUN = ("--tool", "pytorch", "--model", "lenet", "--dataset", "mnist", "--dry-run")
STORE = "{tmp}/logs/results.sqlite"
MINE = "my own notes\n"
SQLITE_HEADER = b"SQLite format 3\x00"

CASES: list[tuple[tuple[str, ...], int, str]] = [
    # 1: nothing the harness writes replaces the store, or a file it did not create
    (("export", "--store", STORE, "-o", STORE), 2, "is the results store"),
    (("export", "--store", STORE, "-o", STORE, "--force"), 2, "is the results store"),
    (("report", "--store", "{tmp}/logs", "--format", "markdown", "-o", STORE), 2, "results store"),
    (("report", "--store", "{tmp}/logs", "-o", STORE + "-wal", "--force"), 2, "(wal file)"),
    (("export", "--store", STORE, "-o", "{tmp}/link-to-store", "--force"), 2, "results store"),
    (("export", "--store", STORE, "-o", "{tmp}/hard-link", "--force"), 2, "is the results store"),
    (("export", "--store", STORE, "-o", "{tmp}/other.sqlite", "--force"), 2, "SQLite database"),
    (("compare", "{tmp}/logs", "{tmp}/logs", "--format", "csv", "-o", STORE), 2, "results store"),
    (("compare", STORE, STORE, "--format", "csv", "-o", "{tmp}/other.sqlite"), 2, "SQLite"),
    (("onnx", "lenet", "--dataset", "mnist", "-o", "{tmp}/other.sqlite", "--force"), 2, "SQLite"),
    (("export", "--store", STORE, "-o", "{tmp}/mine.txt"), 2, "exists: give --force"),
    (("report", "--store", STORE, "--format", "html", "-o", "{tmp}/mine.txt"), 2, "--force"),
    (("compare", STORE, STORE, "--format", "markdown", "-o", "{tmp}/mine.txt"), 2, "--force"),
    (("onnx", "lenet", "--dataset", "mnist", "-o", "{tmp}/mine.txt"), 2, "exists: give --force"),
    (("export", "--store", STORE, "-o", "{tmp}/mine.txt", "--force"), 0, "wrote"),
    (("export", "--store", STORE, "-o", "{tmp}/empty.txt"), 0, "wrote"),
    (("export", "--store", STORE, "-o", "{tmp}/new/folder/runs.csv"), 0, "wrote"),
    # 4: options that do not apply
    ((*RUN, "--gpu", "0"), 2, "--gpu 0 picks the GPUs of --num-gpus N"),
    ((*RUN, "--launcher", "local-nodes"), 2, "--launcher local-nodes says how --nodes N"),
    ((*RUN, "--weights", "w.npz"), 2, "--weights applies to inference"),
    ((*RUN, "--task", "inference", "--lr", "0.1"), 2, "--lr applies to training"),
    ((*RUN, "--task", "inference", "--compile"), 2, "--compile applies to training"),
    ((*RUN, "--compile", "-o", "compile=off"), 2, "--compile turns on -o compile=true"),
    (("verify", "--models", ""), 2, "--models '' names nothing"),
    (("verify", "--tools", ","), 2, "--tools ',' names nothing"),
    (("sweep", "smoke", "--dry-run", "--tools", ""), 2, "--tools '' names nothing"),
    (("peak", "--all-precisions"), 2, "--all-precisions applies with --tool only"),
    (("peak", "--tool", "pytorch", "--fp64", "--show"), 2, "--fp64 applies to the NumPy"),
    # 5: the newer commands' options
    (("ops", "--tool", "pytorch", "--scale", "0"), 2, "--scale must be a positive number"),
    (("ops", "--tool", "pytorch", "--threads", "0"), 2, "--threads must be a positive number"),
    (("ops", "--tool", "pytorch", "--timeout", "0"), 2, "--timeout must be a positive number"),
    (("ops", "--tool", "pytorch", "--timeout", "-5"), 2, "--timeout must be a positive number"),
    (("ops", "--tool", "pytorch", "--min-time", "0"), 2, "--min-time must be a positive"),
    (("ops", "--tool", "pytorch", "--num-gpus", "0"), 2, "--num-gpus must be -1"),
    (("ops", "--tool", "pytorch", "--output-dir", "{tmp}/mine.txt"), 2, "is a file, not a folder"),
    (("ops", "--tool", "pytorch", "--output-dir", "{tmp}/loop/x"), 2, "loop of symbolic links"),
    (("ops", "--tool", "pytorch", "--output-dir", "{tmp}/dangling"), 2, "broken symbolic link"),
    (("ops", "--tool", "pytorch", "--output-dir", "/proc/harness-misuse"), 2, "cannot write in"),
    (("sweep", "smoke", "--output-dir", "{tmp}/loop"), 2, "--output-dir {tmp}/loop: {tmp}/loop"),
    (("report", "--store", STORE, "-o", "{tmp}/loop/r.txt"), 2, "loop of symbolic links"),
    (("peak", "--sizes", "99999999999"), 2, "give smaller sizes"),
    (("peak", "--tool", "nosuch"), 2, "unknown tool 'nosuch'"),
    (("peak", "--tool", "onnxruntime"), 2, "has no operation kernels"),
    (("peak", "--min-time", "0"), 2, "--min-time must be a positive number"),
    (("verify", "--timeout", "-1"), 2, "--timeout must be zero (no limit) or more"),
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two empty stores, made once: each test gets copies."""
    from harness.store.store import ResultStore

    folder = tmp_path_factory.mktemp("stores")
    ResultStore(folder / "logs" / "results.sqlite")
    ResultStore(folder / "other.sqlite")
    return folder


@pytest.fixture
def tmp(tmp_path: Path, stores: Path) -> Path:
    shutil.copytree(stores, tmp_path, dirs_exist_ok=True)
    (tmp_path / "mine.txt").write_text(MINE)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "link-to-store").symlink_to(tmp_path / "logs" / "results.sqlite")
    os.link(tmp_path / "logs" / "results.sqlite", tmp_path / "hard-link")
    (tmp_path / "loop").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    return tmp_path


@pytest.mark.parametrize(("argv", "code", "words"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_misuse(
    tmp: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], code: int, words: str
) -> None:
    if "/proc/" in " ".join(argv) and not Path("/proc/self").exists():
        pytest.skip("needs /proc (a folder nobody can write in)")
    args = [a.replace("{tmp}", str(tmp)) for a in argv]
    assert main(args) == code
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert words.replace("{tmp}", str(tmp)) in " ".join((out.out + out.err).split()), out.err
    if code == 2:  # one line, naming the problem
        assert [line for line in out.err.splitlines() if line.strip()] == [out.err.strip()], out.err
        assert out.err.startswith("error:"), out.err
    for store in (tmp / "logs" / "results.sqlite", tmp / "other.sqlite"):
        assert store.read_bytes().startswith(SQLITE_HEADER)  # never written over
    if "--force" not in args or str(tmp / "mine.txt") not in args:
        assert (tmp / "mine.txt").read_text() == MINE


@pytest.mark.onnxruntime
def test_onnx_writes_into_a_missing_folder(tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp / "new" / "folder" / "lenet.onnx"
    assert main(["onnx", "lenet", "--dataset", "mnist", "-o", str(target)]) == 0
    assert target.stat().st_size > 0


EVIL = "k|x\\|y <img src=x onerror=alert(1)> [a](javascript:b)\n# title"


def _assert_literal(text: str) -> None:
    assert "<img" not in text and "](javascript" not in text
    assert "k\\|x\\\\\\|y &lt;img" in text  # every pipe escaped, the backslash too
    assert "\n# title" not in text


def test_markdown_escapes_ops_and_kernel_names(tmp: Path) -> None:
    """Item 9: the report's Operations section and the ops comparison print names as text."""
    from harness.report import ops as ops_section
    from harness.results import compare_ops
    from harness.store.schema import OpResult, OpSet, OpsResult, Stat
    from harness.store.store import ResultStore

    store = tmp / "logs" / "results.sqlite"
    op = OpResult(kernel="gemm", name=EVIL, tflops=1.0, time_us=Stat(n=1, mean=2.0))
    result = OpsResult(ops_id="o1", tool=EVIL, suite=EVIL, sets=[OpSet(kind="gemm", ops=[op])])
    ResultStore(store).add_ops(result)
    _assert_literal(ops_section.markdown(store))
    _, a = compare_ops.load_side(str(store), None)
    _assert_literal(compare_ops.markdown(compare_ops.compare(a, a), EVIL, EVIL))
