"""Faults and bad input (issue 13): each test fails if the behaviour it names breaks.

Non-finite numbers, strict JSON, checks made before any worker starts, backend option
declarations, output locations (read-only ones made with a read-only bind mount in a
private mount namespace), the sweep start race with two real processes, corrupt dataset
files, sweep mistakes, broken plugins and Markdown escaping. Signals: test_signals.py.
"""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_cli import harness_env, run_cli
from plugin_helpers import Good, backend_info

from harness import hookimpl
from harness.backend import BackendInfo, Option, check_options
from harness.datasets import DatasetError, cifar, idx, open_source
from harness.errors import UsageError
from harness.plugins import PluginManager
from harness.report.text import _md
from harness.store import strictjson
from harness.sweep.config import load, parse

FAKE_RUN = ("--tool", "fake", "--model", "lenet", "--dataset", "mnist")
QUICK = ("--synthetic", "--warmup-steps", "1", "--steps", "2", "--repeats", "1")
QUICK += ("--idle-baseline", "0")


def _one_line_exit_2(out: subprocess.CompletedProcess[str], message: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    text = " ".join(out.stderr.split())
    assert text.startswith("error:"), out.stderr
    assert message in text, out.stderr


def _strict(text: str) -> Any:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# 4. NaN and infinity --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--lr", "nan"),
        ("--lr", "1e999"),
        ("--timeout", "nan"),
        ("--timeout", "inf"),
        ("--monitor-interval", "inf"),
        ("--min-time", "nan"),
        ("--max-time", "inf"),
        ("--idle-baseline", "-inf"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path: Path, option: str, value: str) -> None:
    out = run_cli(*FAKE_RUN, f"{option}={value}", "--output-dir", str(tmp_path / "logs"))
    _one_line_exit_2(out, "must be a finite number")
    assert not (tmp_path / "logs").exists()


def test_every_subcommand_refuses_non_finite_float_options() -> None:
    out = run_cli("peak", "--min-time", "nan")  # refused before any measurement
    _one_line_exit_2(out, "--min-time must be a finite number, got nan")


@pytest.mark.parametrize("line", ["lr = nan", "timeout = inf", "max_time = -inf", "min_time = nan"])
def test_sweep_parameters_refuse_non_finite_numbers(line: str) -> None:
    text = f'[sweep]\ntools = ["x"]\nmodels = ["lenet"]\ndatasets = ["mnist"]\n[defaults]\n{line}\n'
    import tomllib

    with pytest.raises(UsageError, match="must be a finite number"):
        parse(tomllib.loads(text), "s.toml")
    config = parse(tomllib.loads(text.replace(line, "")), "s.toml")
    with pytest.raises(UsageError, match="must be a finite number"):
        config.cells({"max_time_s": float("inf")})


def test_strict_json_turns_non_finite_values_into_null() -> None:
    value = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": (2.0,)}
    assert strictjson.finite(value) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2.0]}
    assert _strict(strictjson.dumps(value)) == {
        "a": None,
        "b": [1.0, None, {"c": None}],
        "d": [2.0],
    }
    assert strictjson.finite(np.float32("nan")) is None


def test_a_nan_loss_is_stored_as_strict_json(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    out = run_cli(*FAKE_RUN, *QUICK, "-o", "behaviour=nan", "--output-dir", str(logs))
    assert out.returncode in (0, 1), out.stderr
    files = list(logs.glob("**/*.json")) + list(logs.glob("**/*.jsonl"))
    assert {p.name for p in files} >= {"run.json", "result.json", "record.json", "events.jsonl"}
    for path in files:
        text = path.read_text()
        lines = text.splitlines() if path.suffix == ".jsonl" else [text]
        for line in lines:
            _strict(line)
    assert "NaN" not in (logs.glob("*/repeat-1/events.jsonl").__next__()).read_text()
    db = sqlite3.connect(logs / "results.sqlite")
    checked = 0
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        for column in (c for c in columns if c.endswith("json")):
            for (value,) in db.execute(f"SELECT {column} FROM {table}"):
                if value:
                    _strict(value)
                    checked += 1
    assert checked >= 2


# 7. Checked before a worker starts; backend options ------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "--seed must be zero or more"),
        (["--real", "--data-dir", "{tmp}/nodata"], "mnist: no train data under"),
        (["--synthetic", "--batch-size", "70000"], "but mnist's train split has 60000"),
        (["--synthetic", "--dump-weights", "{tmp}/afile"], "is a file, not a folder"),
        (["--synthetic", "--dump-weights", "{tmp}/afile/sub"], "is a file, so no folder"),
        (["-o", "complie=true"], "fake has no option 'complie'"),
        (["-o", "step_s=abc"], "-o step_s=abc: expected a number"),
        (["-o", "step_s=inf"], "expected a finite number"),
        (["-o", "fail_at=1.5"], "expected a whole number"),
        (["-o", "behaviour=explode"], "choose from: ok, raise"),
    ],
)
def test_mistakes_are_caught_before_any_worker(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "afile").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = run_cli(*FAKE_RUN, *args, "--output-dir", str(tmp_path / "logs"), timeout=120)
    _one_line_exit_2(out, message)
    assert not (tmp_path / "logs").exists()  # nothing ran


def test_missing_validation_or_partial_files_are_caught_before_any_worker(tmp_path: Path) -> None:
    from dataformats import write_mnist_split

    data = tmp_path / "data"
    write_mnist_split(data / "mnist", "train", np.zeros((8, 28, 28), np.uint8), np.zeros(8))
    logs = str(tmp_path / "logs")
    out = run_cli(*FAKE_RUN, "--data-dir", str(data), "--validate", "--output-dir", logs)
    _one_line_exit_2(out, "mnist: no test data under")
    (data / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    out = run_cli(*FAKE_RUN, "--data-dir", str(data), "--output-dir", logs)
    _one_line_exit_2(out, "mnist train: incomplete files")
    assert not (tmp_path / "logs").exists()


def test_backend_options_are_declared_and_listed() -> None:
    pm = PluginManager()
    for tool, names in {
        "pytorch": {"compile", "channels_last", "cuda_events"},
        "tensorflow": {"xla"},
        "jax": {"compile_cache"},
        "mxnet": {"hybridize", "kvstore"},
    }.items():
        declared = pm.backends[tool].options
        assert declared is not None and {o.name for o in declared} == names
        assert all(o.help and o.type in ("bool", "int", "float", "str") for o in declared)
    with pytest.raises(UsageError, match=r"no option 'complie' \(did you mean 'compile'\?\)"):
        check_options(pm.backends["pytorch"], {"complie": "true"})
    with pytest.raises(UsageError, match="expected true or false"):
        check_options(pm.backends["pytorch"], {"compile": "maybe"})
    check_options(pm.backends["jax"], {"compile_cache": "/tmp/cache"})  # a folder is fine
    undeclared = BackendInfo("u", "U", (), "-", "x:Y")
    check_options(undeclared, {"anything": "goes"})  # an older plugin: not checked
    out = run_cli("list", "--options")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stderr.split())
    assert "pytorch compile=bool default False" in text
    assert "tensorflow xla=bool" in text and "fake step_s=float default 0.01" in text


def test_sweep_files_are_checked_against_backend_options(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[sweep]\ntools = ["pytorch"]\nmodels = ["lenet"]\ndatasets = ["mnist"]\n'
        "[tool.pytorch]\noptions = { complie = true }\n"
    )
    with pytest.raises(UsageError, match="pytorch has no option 'complie'"):
        load(str(path))
    out = run_cli("sweep", str(path), "--dry-run", "--output-dir", str(tmp_path / "logs"))
    _one_line_exit_2(out, "no option 'complie'")


def test_option_declarations_parse_values() -> None:
    assert Option("b", "bool", False, "h").parse("Yes") is True
    assert Option("i", "int", 0, "h").parse("7") == 7
    with pytest.raises(UsageError):
        Option("f", "float", 0.0, "h").parse("nan")
    with pytest.raises(ValueError):
        Option("x", "complex", 0, "h")


# 3. Output locations --------------------------------------------------------------------


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind / /mnt 2>/dev/null || mount -t tmpfs t /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(
    not _unshare_works(), reason="needs unshare -m (a private mount namespace) for read-only mounts"
)


def _run_read_only(
    folder: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` with ``folder`` a read-only filesystem (for it alone)."""
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    command = ["unshare", "-m", "sh", "-c", script, "sh", str(folder)]
    command += [sys.executable, "-m", "harness", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=harness_env(), cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*FAKE_RUN, *QUICK, "--output-dir", "{tmp}/afile"], "is a file, not a folder"),
        ([*FAKE_RUN, *QUICK, "--output-dir", "{tmp}/" + "x" * 300], "the path is too long"),
        ([*FAKE_RUN, *QUICK, "--output-dir", "{tmp}/afile/logs"], "is a file, so no folder"),
        (["report", "--store", "{tmp}/s.sqlite", "-o", "{tmp}"], "-o {tmp} is a folder"),
        (["export", "--store", "{tmp}/s.sqlite", "-o", "{tmp}"], "-o {tmp} is a folder"),
        (["sweep", "smoke", "--output-dir", "{tmp}/afile"], "is a file, not a folder"),
    ],
)
def test_output_locations_are_checked_first(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "afile").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = run_cli(*args, timeout=120)
    _one_line_exit_2(out, message.replace("{tmp}", str(tmp_path)))


@needs_unshare
def test_read_only_output_dir_cwd_and_data_dir(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    out = _run_read_only(ro, *FAKE_RUN, *QUICK, "--output-dir", str(ro / "logs"))
    _one_line_exit_2(out, "read-only filesystem")
    out = _run_read_only(ro, *FAKE_RUN, *QUICK, cwd=ro)  # the default ./logs
    _one_line_exit_2(out, "--output-dir logs: cannot write")
    out = _run_read_only(ro, "download", "mnist", "--data-dir", str(ro / "data"))
    _one_line_exit_2(out, "--data-dir")
    out = _run_read_only(ro, *FAKE_RUN, *QUICK, "--dump-weights", str(ro / "w"))
    _one_line_exit_2(out, "--dump-weights")
    out = _run_read_only(ro, "export", "--store", str(tmp_path / "s.sqlite"), "-o", str(ro / "x"))
    _one_line_exit_2(out, "read-only filesystem")
    assert list(ro.iterdir()) == []


@pytest.mark.slow
@needs_unshare
def test_a_store_on_a_read_only_filesystem_is_reported(tmp_path: Path) -> None:
    """Item 2: report, export, compare and sweep --list read a WAL-mode store that sits on
    a read-only filesystem (no -shm can be made there) and change nothing."""
    logs = tmp_path / "logs"
    done = run_cli(*FAKE_RUN, *QUICK, "--output-dir", str(logs), timeout=120)
    assert done.returncode == 0, done.stderr
    store = logs / "results.sqlite"
    before = sorted(p.name for p in logs.iterdir()), store.read_bytes()
    for args in (
        ["report", "--store", str(store), "--format", "markdown"],
        ["export", "--store", str(store), "--format", "csv"],
        ["compare", str(store), str(store)],
        ["sweep", "--list", "--output-dir", str(logs)],
    ):
        out = _run_read_only(logs, *args)
        assert out.returncode == 0, (args, out.stderr)
        assert "Traceback" not in out.stderr
    assert (
        "| images/sec | MNIST | LeNet | fake |"
        in _run_read_only(logs, "report", "--store", str(store), "--format", "markdown").stdout
    )
    assert (sorted(p.name for p in logs.iterdir()), store.read_bytes()) == before


# 5. The sweep start race ----------------------------------------------------------------


@pytest.mark.slow
def test_the_same_sweep_started_twice_at_once_runs_once(tmp_path: Path) -> None:
    sweep = tmp_path / "race.toml"
    sweep.write_text(
        '[sweep]\nname = "race"\ntools = ["fake"]\nrepeats = 1\n'
        "[defaults]\nwarmup_steps = 1\nsteps = 30\nsynthetic = true\nidle_baseline_s = 0\n"
        'options = { step_s = "0.1" }\n[[workloads]]\ndataset = "mnist"\nmodel = "lenet"\n'
    )
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "harness", "sweep", str(sweep), "--output-dir", str(logs)]
    procs = [
        subprocess.Popen(
            command,
            env=harness_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = next(err for p, (_, err) in zip(procs, outs, strict=True) if p.returncode == 2)
    assert "is being run by process" in loser and "Traceback" not in loser
    db = sqlite3.connect(logs / "results.sqlite")
    assert db.execute("SELECT COUNT(*) FROM sweeps").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


# 6. Corrupt dataset files ---------------------------------------------------------------


def _cifar(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in (*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES):
        entry = {
            b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            b"labels": [int(x) for x in rng.integers(0, 10, 4)],
        }
        path = folder / "cifar10" / cifar.BATCH_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(entry, protocol=2))
    return folder / "cifar10" / cifar.BATCH_DIR / "data_batch_1"


def _mutations(good: bytes, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = [b"", good[:1], good[:-1], good[: len(good) // 3], bytes(rng.integers(0, 256, 500))]
    for _ in range(40):  # bit flips, and bytes overwritten with extreme values
        data = bytearray(good)
        for pos in rng.integers(0, min(len(data), 400), 3):
            data[pos] = int(rng.choice([0, 0xFF, data[pos] ^ (1 << int(rng.integers(8)))]))
        out.append(bytes(data))
    return out


def test_every_corrupt_cifar_batch_is_one_dataset_error(tmp_path: Path) -> None:
    batch = _cifar(tmp_path)
    good = batch.read_bytes()
    failures = 0
    for data in _mutations(good, 1):
        batch.write_bytes(data)
        try:
            open_source("cifar10", "train", tmp_path, synthetic=False)
        except DatasetError as exc:
            failures += 1
            assert "data_batch_1" in str(exc) or "cifar-10-batches-py" in str(exc), exc
            assert "download again" in str(exc), exc
    assert failures > 10


def test_every_corrupt_idx_file_is_one_dataset_error(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = np.zeros((5, 28, 28), np.uint8)
    raw = b"\0\0\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    raw += images.tobytes()
    labels = b"\0\0\x08\x01" + (5).to_bytes(4, "big") + bytes(5)
    (folder / "train-labels-idx1-ubyte").write_bytes(labels)
    target = folder / "train-images-idx3-ubyte.gz"
    count = 0
    for data in _mutations(raw, 2):
        for payload in (data, gzip.compress(data), gzip.compress(data)[:-5]):
            target.write_bytes(payload)
            try:
                open_source("mnist", "train", tmp_path, synthetic=False)
            except DatasetError as exc:
                count += 1
                assert "train-images-idx3-ubyte" in str(exc) or "mnist" in str(exc), exc
                assert "download" in str(exc), exc
    assert count > 10


def test_memory_error_while_reading_is_a_dataset_error(tmp_path: Path, monkeypatch) -> None:
    _cifar(tmp_path)

    def no_memory(self: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(cifar._SafeUnpickler, "load", no_memory)
    with pytest.raises(DatasetError, match=r"data_batch_1: .*corrupt.*download again"):
        open_source("cifar10", "train", tmp_path, synthetic=False)
    monkeypatch.setattr(idx, "parse_idx", lambda data, path: (_ for _ in ()).throw(MemoryError()))
    (tmp_path / "mnist").mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / "mnist" / name).write_bytes(b"\0\0\x08\x01\0\0\0\0")
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.*corrupt"):
        open_source("mnist", "train", tmp_path, synthetic=False)


def test_a_dataset_error_is_never_an_out_of_memory_result(tmp_path: Path) -> None:
    from harness.run import worker

    error = DatasetError("data_batch_1: MemoryError while reading; out of memory")
    assert worker._is_data_error(error)
    data = tmp_path / "data" / "mnist"
    data.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (data / name).write_bytes(b"\0\0\x08\x01\0\0\0\x05")  # announces 5 bytes, has none
    logs = tmp_path / "logs"
    out = run_cli(
        *FAKE_RUN, "--real", "--data-dir", str(tmp_path / "data"), "--warmup-steps", "1",
        "--steps", "2", "--repeats", "1", "--idle-baseline", "0", "--json",
        "--batch-size", "1", "--output-dir", str(logs),
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])["repeats"][0]
    assert record["status"] == "error"
    assert "train-images-idx3-ubyte" in record["cause"]


# 8. Sweep mistakes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('tools = ["fake"]', 'tools = ["fakee"]'), "unknown tool 'fakee' in sweep.tools"),
        (('model = "lenet"', 'model = "lenett"'), "unknown model 'lenett'"),
        (('dataset = "mnist"', 'dataset = "mnistt"'), "unknown dataset 'mnistt'"),
    ],
)
def test_sweep_typos_exit_2(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = (
        '[sweep]\ntools = ["fake"]\n[defaults]\nsynthetic = true\n'
        '[[workloads]]\ndataset = "mnist"\nmodel = "lenet"\n'
    )
    path = tmp_path / "s.toml"
    path.write_text(text.replace(*change))
    for extra in (["--dry-run"], []):
        out = run_cli("sweep", str(path), *extra, "--output-dir", str(tmp_path / "logs"))
        _one_line_exit_2(out, message)
    assert not (tmp_path / "logs" / "results.sqlite").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("batch_size = 0", "--batch-size must be a positive number, got 0"),
        ('precision = "fp8"', "unknown precision 'fp8'"),
        ("max_time = 1.0\nmin_time = 5.0", "--min-time (5 s) must not exceed --max-time (1 s)"),
    ],
)
def test_sweep_values_no_machine_could_run_exit_2(
    tmp_path: Path, setting: str, message: str
) -> None:
    """A mistake, not a cell this machine cannot run: the sweep stops before any work."""
    path = tmp_path / "s.toml"
    path.write_text(
        '[sweep]\ntools = ["fake"]\n[defaults]\nsynthetic = true\n'
        f'[[workloads]]\ndataset = "mnist"\nmodel = "lenet"\n{setting}\n'
    )
    for extra in (["--dry-run"], []):
        out = run_cli("sweep", str(path), *extra, "--output-dir", str(tmp_path / "logs"))
        _one_line_exit_2(out, f"fake/lenet/mnist/CPU: {message}")
    assert not (tmp_path / "logs" / "results.sqlite").exists()


def test_a_sweep_file_that_is_not_utf8_gets_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[sweep]\ntools = ["fake"]\ndescription = "caf\xe9"\n'.encode("latin-1"))
    out = run_cli("sweep", str(path), "--dry-run")
    _one_line_exit_2(out, "not a UTF-8 text file")


def test_many_hardware_entries_are_checked_for_duplicates() -> None:
    tables = [{"name": f"h{i}", "num_gpus": -1} for i in range(20000)]
    data = {"sweep": {"tools": ["x"], "models": ["lenet"], "datasets": ["mnist"]}}
    assert len(parse({**data, "hardware": tables}).hardware) == 20000
    with pytest.raises(UsageError, match="two hardware entries are labelled 'h7'"):
        parse({**data, "hardware": [*tables, {"name": "h7"}]})


# 9. Plugins -----------------------------------------------------------------------------


class Misspelt:
    __name__ = "misspelt"

    @hookimpl
    def harness_register_backend(self, register: Any) -> None:  # no such hook
        register(backend_info("never"))


class Raising:
    __name__ = "raising"

    @hookimpl
    def harness_register_backends(self, register: Any) -> None:
        register(backend_info("half"))
        raise RuntimeError("boom")


class Clash:
    __name__ = "clash"

    @hookimpl
    def harness_register_backends(self, register: Any) -> None:
        register(backend_info("good"))
        register(backend_info("clash-own"))


class BadObserver:
    __name__ = "bad-observer"

    @hookimpl
    def harness_run_started(self, spec: Any, run_dir: Any) -> None:
        raise ValueError("observer broke")

    @hookimpl
    def harness_refuse_run(self, spec: Any, backend: Any, network: Any) -> str | None:
        raise ValueError("refusal broke")


def test_broken_plugins_are_reported_and_left_out(capsys) -> None:
    pm = PluginManager(entry_points=False, plugins=(Good(), Misspelt(), Raising(), Clash()))
    assert set(pm.backends) == {"good"}  # nothing of the broken ones, all of the good one
    assert "unknown hook 'harness_register_backend'" in pm.load_errors["misspelt"]
    assert "raised RuntimeError: boom" in pm.load_errors["raising"]
    assert "registers the backend 'good', which 'good' registers too" in pm.load_errors["clash"]
    assert pm.launcher("local") is not None  # the built-in launchers still work
    observed = PluginManager(entry_points=False, plugins=(Good(), BadObserver()))
    observed.run_started(None, Path("."))  # type: ignore[arg-type]
    assert "observer broke" in capsys.readouterr().err
    assert "bad-observer" in observed.load_errors
    assert observed.refusal(None, None, None) is None  # type: ignore[arg-type]


def test_a_duplicate_entry_point_name_is_reported(monkeypatch) -> None:
    import importlib.metadata as metadata

    points = [
        metadata.EntryPoint("dup", "harness.backends.pytorch:PLUGIN", "harness"),
        metadata.EntryPoint("dup", "harness.backends.jax:PLUGIN", "harness"),
    ]
    monkeypatch.setattr(metadata, "entry_points", lambda group: points)
    monkeypatch.delenv("HARNESS_PLUGINS", raising=False)
    pm = PluginManager()
    assert "pytorch" in pm.backends and "jax" not in pm.backends
    (key,) = [k for k in pm.load_errors if k.startswith("dup")]
    assert "already uses the entry-point name 'dup'" in pm.load_errors[key]


# 10. Markdown ---------------------------------------------------------------------------


def test_markdown_escapes_html_and_markup() -> None:
    label = '<img src=x onerror="alert(1)"> [x](javascript:alert(1)) *b* `c` a|b'
    text = _md(label)
    assert "<" not in text and ">" not in text
    assert "&lt;img" in text and "[x]\\(javascript" in text and "a\\|b" in text
    assert _md("1 GPU [A100] & co") == "1 GPU [A100] &amp; co"
    assert "\n" not in _md("two\nlines")
