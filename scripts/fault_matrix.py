"""Runs the matrix of bad inputs and faults the harness handles (issue 13) and counts.

    python scripts/fault_matrix.py            # everything (a few minutes on 2 cores)
    python scripts/fault_matrix.py -v         # one line per case
    python scripts/fault_matrix.py --only signals,datasets

Prints ``tried N handled N lost 0``: a case is *handled* when the harness did what it
should (one line and exit 2 for a mistake, a DatasetError for a corrupt file, exit
128 + signal with the worker ended for a signal, ...), and something is *lost* when a
measurement that had finished is missing from the results store afterwards. Exits 1
unless every case was handled and nothing was lost.

Needs only the core (``pip install -e .``): runs use the fake backend of tests/fakes
(``HARNESS_PLUGINS=fake_backend``), as the tests do. Cases that need a private mount
namespace (read-only filesystems, ``unshare -m``) are skipped, and said so, without it.
New groups: add a function to GROUPS that yields ``Case`` objects.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes"
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Case:
    group: str
    name: str
    handled: bool
    lost: int = 0
    note: str = ""
    skipped: bool = False


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["HARNESS_PLUGINS"] = "fake_backend"
    env["PYTHONPATH"] = ":".join(filter(None, [str(FAKES), str(ROOT), env.get("PYTHONPATH")]))
    return env


def _defaults() -> None:
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def _ignored() -> None:
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def harness(*args: str, cwd: Path | None = None, prefix: tuple[str, ...] = ()) -> Any:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=300,
        preexec_fn=_defaults,
    )


def _one_line(out: Any, expect: str) -> tuple[bool, str]:
    text = " ".join(out.stderr.split())
    ok = out.returncode == 2 and text.startswith("error:") and "Traceback" not in out.stderr
    ok = ok and expect in text
    return ok, f"exit {out.returncode}: {text[:140]}"


RUN = ("--tool", "fake", "--model", "lenet", "--dataset", "mnist")
QUICK = ("--synthetic", "--warmup-steps", "1", "--steps", "2", "--repeats", "1")
QUICK += ("--idle-baseline", "0")


# Mistakes on the command line: one line, exit 2, nothing run ---------------------------


def cli_mistakes(tmp: Path) -> Iterator[Case]:
    (tmp / "afile").write_text("x")
    logs = str(tmp / "never")
    cases: list[tuple[str, list[str], str]] = []
    for option in ("--lr", "--timeout", "--monitor-interval", "--min-time", "--max-time"):
        for value in ("nan", "inf", "-inf", "1e999"):
            cases.append((f"{option}={value}", [f"{option}={value}"], "finite"))
    cases += [
        ("--seed -1", ["--seed", "-1"], "--seed must be zero or more"),
        ("--real without files", ["--real", "--data-dir", str(tmp / "none")], "no train data"),
        ("batch > dataset", ["--synthetic", "--batch-size", "60001"], "train split has 60000"),
        ("--dump-weights file", ["--synthetic", "--dump-weights", str(tmp / "afile")], "a file"),
        ("-o typo", ["-o", "complie=true"], "has no option 'complie'"),
        ("-o float nan", ["-o", "step_s=nan"], "finite"),
        ("-o int 1.5", ["-o", "fail_at=1.5"], "whole number"),
        ("-o choice", ["-o", "behaviour=explode"], "choose from"),
        ("--output-dir file", [*QUICK, "--output-dir", str(tmp / "afile")], "is a file"),
        ("--output-dir long", [*QUICK, "--output-dir", str(tmp / ("x" * 300))], "too long"),
        ("--output-dir under file", [*QUICK, "--output-dir", str(tmp / "afile/x")], "is a file"),
    ]
    for name, args, expect in cases:
        if "--output-dir" not in args:
            args = [*args, "--output-dir", logs]
        ok, note = _one_line(harness(*RUN, *args), expect)
        yield Case("cli", name, ok and not Path(logs).exists(), note=note)
    ok, note = _one_line(harness("peak", "--min-time", "nan"), "finite")
    yield Case("cli", "peak --min-time nan", ok, note=note)
    ok, note = _one_line(harness("sweep", "smoke", "--output-dir", str(tmp / "afile")), "a file")
    yield Case("cli", "sweep --output-dir file", ok, note=note)
    for command in ("report", "export"):
        out = harness(command, "--store", str(tmp / "s.sqlite"), "-o", str(tmp))
        ok, note = _one_line(out, "is a folder")
        yield Case("cli", f"{command} -o folder", ok, note=note)


# Sweep files ---------------------------------------------------------------------------

SWEEP = (
    '[sweep]\ntools = ["fake"]\n[defaults]\nsynthetic = true\nwarmup_steps = 1\nsteps = 2\n'
    "idle_baseline_s = 0\n"
    '[[workloads]]\ndataset = "mnist"\nmodel = "lenet"\n'
)


def sweep_mistakes(tmp: Path) -> Iterator[Case]:
    variants = {
        "unknown tool": (SWEEP.replace('["fake"]', '["fakee"]'), "unknown tool"),
        "unknown model": (SWEEP.replace('"lenet"', '"lenett"'), "unknown model"),
        "unknown dataset": (SWEEP.replace('"mnist"', '"mnistt"'), "unknown dataset"),
        "lr = nan": (SWEEP + "", "finite"),
        "timeout = inf": (SWEEP, "finite"),
        "option typo": (
            SWEEP.replace("steps = 2\n", 'steps = 2\noptions = { stp_s = "1" }\n'),
            "no option",
        ),
    }
    for name, (text, expect) in variants.items():
        if name in ("lr = nan", "timeout = inf"):
            text = text.replace("[defaults]\n", f"[defaults]\n{name}\n")
        path = tmp / "sweep.toml"
        path.write_text(text)
        for extra in (["--dry-run"], []):
            out = harness("sweep", str(path), *extra, "--output-dir", str(tmp / "sweeplogs"))
            ok, note = _one_line(out, expect)
            yield Case("sweep", f"{name} {' '.join(extra)}".strip(), ok, note=note)
    path = tmp / "latin1.toml"
    path.write_bytes(
        SWEEP.replace("[defaults]", '[defaults]\ntags = { who = "caf\xe9" }').encode("latin-1")
    )
    ok, note = _one_line(harness("sweep", str(path), "--dry-run"), "not a UTF-8")
    yield Case("sweep", "not UTF-8", ok, note=note)
    sys.path.insert(0, str(ROOT))
    from harness.sweep.config import parse

    tables = [{"name": f"h{i}", "num_gpus": -1} for i in range(20000)]
    started = time.perf_counter()
    parse(
        {"sweep": {"tools": ["x"], "models": ["lenet"], "datasets": ["mnist"]}, "hardware": tables}
    )
    seconds = time.perf_counter() - started
    yield Case("sweep", "20,000 hardware entries", seconds < 2.0, note=f"{seconds:.2f} s")


# Stores: corrupt, foreign, newer, a bad row; read-only commands never change them -------


def _fresh_store(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    harness(*RUN, *QUICK, "--output-dir", str(folder))
    return folder / "results.sqlite"


def stores(tmp: Path) -> Iterator[Case]:
    import hashlib

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    good = _fresh_store(tmp / "good")
    broken: dict[str, Callable[[Path], None]] = {
        "random bytes": lambda p: p.write_bytes(bytes(range(256)) * 40),
        "truncated": lambda p: p.write_bytes(good.read_bytes()[:1500]),
        "bit-flipped header": lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 300),
        "another program's database": lambda p: sqlite3.connect(p).executescript(
            "CREATE TABLE photos (id INTEGER); INSERT INTO photos VALUES (1);"
        ),
        "newer schema": lambda p: (
            shutil.copy(good, p),
            sqlite3.connect(p).execute("PRAGMA user_version = 99").connection.commit(),
        ),
    }
    expect = {
        "random bytes": "not a readable SQLite",
        "truncated": "not a readable SQLite",
        "bit-flipped header": "not a readable SQLite",
        "another program's database": "not a harness results store",
        "newer schema": "newer harness",
    }
    for name, make in broken.items():
        path = tmp / name.replace(" ", "-").replace("'", "") / "results.sqlite"
        path.parent.mkdir()
        make(path)
        before = digest(path)
        for command in ("report", "export", "compare"):
            args = [command, "--store", str(path)] if command != "compare" else [
                command, str(path), str(path)]  # fmt: skip
            ok, note = _one_line(harness(*args), expect[name])
            ok = ok and digest(path) == before
            yield Case("stores", f"{name}: {command}", ok, note=note)
    # one row with invalid JSON: left out with a warning, the rest reported
    bad = tmp / "bad-row" / "results.sqlite"
    bad.parent.mkdir()
    shutil.copy(good, bad)
    _fresh_store(bad.parent)  # a second run beside the first
    db = sqlite3.connect(bad)
    victim = db.execute("SELECT run_id FROM runs ORDER BY started_at LIMIT 1").fetchone()[0]
    db.execute("UPDATE runs SET result_json = '{' WHERE run_id = ?", (victim,))
    db.commit()
    db.close()
    out = harness("report", "--store", str(bad), "--format", "markdown")
    ok = (
        out.returncode == 0 and f"skipped run {victim}" in out.stderr and "images/sec" in out.stdout
    )
    yield Case("stores", "a row with invalid JSON", ok, note=out.stderr.strip()[:140])
    # read-only commands leave a good store byte for byte as it was
    before = digest(good)
    for args in (["report", "--store", str(good)], ["export", "--store", str(good)],
                 ["compare", str(good), str(good)], ["sweep", "--list", "--output-dir",
                 str(good.parent)]):  # fmt: skip
        out = harness(*args)
        ok = out.returncode == 0 and digest(good) == before
        yield Case(
            "stores", f"{args[0]} leaves the store unchanged", ok, note=f"exit {out.returncode}"
        )


# A disk that fills mid-run (a 4 MiB tmpfs; needs root) ---------------------------------


def full_disk(tmp: Path) -> Iterator[Case]:
    mount = tmp / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        yield Case("full-disk", "mid-run", False, skipped=True, note=made.stderr.strip())
        return
    try:
        logs = mount / "logs"
        env = _env() | {
            "HARNESS_PLUGINS": "fake_backend,disk_filler",
            "HARNESS_TEST_FILL_DISK": "1",
        }
        full = subprocess.run(
            [sys.executable, "-m", "harness", *RUN, *QUICK[:-4], "--repeats", "2",
             "--idle-baseline", "0", "--output-dir", str(logs)],
            capture_output=True, text=True, env=env, timeout=300, preexec_fn=_defaults,
        )  # fmt: skip
        said = full.returncode == 1 and "the disk is full" in full.stderr
        said = said and "Traceback" not in full.stderr
        yield Case("full-disk", "the run says the disk is full", said, note=full.stderr[-140:])
        (logs / "filler.bin").unlink(missing_ok=True)
        again = harness(*RUN, *QUICK, "--output-dir", str(logs))
        db = sqlite3.connect(logs / "results.sqlite")
        stored = db.execute("SELECT COUNT(*) FROM repeats WHERE status = 'ok'").fetchone()[0]
        db.close()
        finished = sum(
            1
            for record in logs.glob("*/repeat-*/record.json")
            if json.loads(record.read_text() or "{}").get("status") == "ok"
        )
        taken = "taken into the store" in again.stderr
        yield Case(
            "full-disk",
            "the next start takes in what was on disk",
            taken and again.returncode == 0,
            lost=max(0, finished - stored),
            note=f"{stored} ok repeats stored, {finished} ok records on disk",
        )
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# Read-only locations (a read-only bind mount in a private mount namespace) -------------


def _unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


def read_only(tmp: Path) -> Iterator[Case]:
    ro = tmp / "ro"
    ro.mkdir()
    if not _unshare():
        yield Case("read-only", "all", False, note="no unshare -m here", skipped=True)
        return
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    prefix = ("unshare", "-m", "sh", "-c", script, "sh", str(ro))
    cases = [
        ("--output-dir", [*RUN, *QUICK, "--output-dir", str(ro / "logs")], None),
        ("cwd (./logs)", [*RUN, *QUICK], ro),
        ("--dump-weights", [*RUN, *QUICK, "--dump-weights", str(ro / "w")], None),
        ("download --data-dir", ["download", "mnist", "--data-dir", str(ro / "d")], None),
        ("export -o", ["export", "--store", str(tmp / "s.sqlite"), "-o", str(ro / "x")], None),
        ("report -o", ["report", "--store", str(tmp / "s.sqlite"), "-o", str(ro / "r")], None),
    ]
    for name, args, cwd in cases:
        ok, note = _one_line(harness(*args, cwd=cwd, prefix=prefix), "")
        ok = ok and ("cannot write" in note or "read-only" in note)
        yield Case("read-only", name, ok, note=note)


# Signals and kill -9 -------------------------------------------------------------------


def _exists(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _wait_for(predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    return None


def _timed(logs: Path, repeat: int) -> Path | None:
    for path in logs.glob(f"*/repeat-{repeat}/events.jsonl"):
        if '"timed"' in path.read_text():
            return path
    return None


def _worker(events: Path) -> int:
    return next(e["pid"] for e in map(json.loads, events.open()) if e["event"] == "start")


def signals(tmp: Path) -> Iterator[Case]:
    variants = [(sig, _defaults) for sig in HANDLED_SIGNALS]
    variants += [(sig, _ignored) for sig in HANDLED_SIGNALS]
    for n, (sig, preexec) in enumerate(variants):
        logs = tmp / f"sig{n}"
        name = signal.Signals(sig).name + (" (inherited SIG_IGN)" if preexec is _ignored else "")
        args = [*RUN, "--synthetic", "--warmup-steps", "1", "--steps", "6", "--repeats", "3"]
        args += ["--idle-baseline", "0", "-o", "step_s=0.3", "--output-dir", str(logs)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", *args],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
        )
        events = _wait_for(lambda logs=logs: _timed(logs, 2), 240)
        if events is None:
            proc.kill()
            proc.communicate()
            yield Case("signals", name, False, note="never reached repeat 2")
            continue
        worker = _worker(events)
        finished = len(list(logs.glob("*/repeat-*/record.json")))  # measured before the signal
        proc.send_signal(sig)
        proc.communicate(timeout=120)
        gone = _wait_for(lambda w=worker: not _exists(w), 15)
        db = sqlite3.connect(logs / "results.sqlite")
        stored = db.execute("SELECT COUNT(*) FROM repeats WHERE status = 'ok'").fetchone()[0]
        runs = db.execute("SELECT status FROM runs").fetchall()
        db.close()
        ok = proc.returncode == 128 + sig and bool(gone) and runs == [("interrupted",)]
        note = f"exit {proc.returncode}, worker ended: {bool(gone)}, runs {runs}"
        yield Case("signals", name, ok, lost=max(0, finished - stored), note=note)
    # kill -9 of the orchestrator: the worker dies with it; the next start ends stale ones
    logs = tmp / "kill9"
    args = [*RUN, "--synthetic", "--warmup-steps", "1", "--steps", "3", "--repeats", "1"]
    args += ["--idle-baseline", "0", "-o", "behaviour=hang", "--output-dir", str(logs)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_defaults,
    )
    events = _wait_for(lambda: _timed(logs, 1), 120)
    worker = _worker(events) if events else -1
    proc.kill()
    proc.wait()
    gone = _wait_for(lambda: not _exists(worker), 15)
    yield Case("signals", "kill -9 of the orchestrator", bool(gone), note=f"worker {worker}")
    import os

    env = dict(_env(), HARNESS_ORCHESTRATOR="999999999:1:999999999")
    env["HARNESS_OUTPUT_DIR"] = str(logs.resolve())
    stale = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], env=env, start_new_session=True
    )
    time.sleep(0.5)
    out = harness(*RUN, *QUICK, "--output-dir", str(logs))
    ended = stale.wait(timeout=30) is not None
    note = " ".join(out.stderr.split())[:100]
    yield Case("signals", "stale worker ended at the next start", ended and out.returncode == 0,
               note=note)  # fmt: skip
    if stale.poll() is None:
        os.kill(stale.pid, signal.SIGKILL)


# The sweep start race ------------------------------------------------------------------


def sweep_race(tmp: Path) -> Iterator[Case]:
    for attempt in range(3):
        logs = tmp / f"race{attempt}"
        path = tmp / f"race{attempt}.toml"
        path.write_text(
            SWEEP.replace("steps = 2", 'steps = 20\noptions = { step_s = "0.1" }').replace(
                "[sweep]", f'[sweep]\nname = "race{attempt}"'
            )
        )
        command = [sys.executable, "-m", "harness", "sweep", str(path), "--output-dir", str(logs)]
        procs = [
            subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, preexec_fn=_defaults)
            for _ in range(2)
        ]  # fmt: skip
        errs = [p.communicate(timeout=300)[1] for p in procs]
        db = sqlite3.connect(logs / "results.sqlite")
        sweeps = db.execute("SELECT COUNT(*) FROM sweeps").fetchone()[0]
        runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        db.close()
        codes = sorted(p.returncode for p in procs)
        said = any("is being run by process" in e for e in errs)
        ok = sweeps == 1 and runs == 1 and codes == [0, 2] and said
        yield Case(
            "sweep-race", f"attempt {attempt + 1}", ok, note=f"exits {codes}, {sweeps} sweeps"
        )


# NaN results are stored as strict JSON -------------------------------------------------


def strict_json(tmp: Path) -> Iterator[Case]:
    logs = tmp / "nan"
    harness(*RUN, *QUICK, "-o", "behaviour=nan", "--output-dir", str(logs))

    def refuse(token: str) -> None:
        raise ValueError(token)

    files = [*logs.glob("**/*.json"), *logs.glob("**/*.jsonl")]
    for path in files:
        try:
            for line in (
                path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
            ):
                json.loads(line, parse_constant=refuse)
            ok = True
        except ValueError as exc:
            ok = False
            note = str(exc)
        yield Case("strict-json", path.name, ok, note="" if ok else note)
    yield Case("strict-json", "files written", len(files) >= 5, note=f"{len(files)} files")


# Corrupt dataset files -----------------------------------------------------------------


def _mutations(good: bytes, seed: int, count: int = 40) -> list[bytes]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = [b"", good[:1], good[:-1], good[: len(good) // 3], bytes(rng.integers(0, 256, 500))]
    for _ in range(count):
        data = bytearray(good)
        for pos in rng.integers(0, min(len(data), 400), 3):
            data[pos] = int(rng.choice([0, 0xFF, data[pos] ^ (1 << int(rng.integers(8)))]))
        out.append(bytes(data))
    return out


def datasets(tmp: Path) -> Iterator[Case]:
    import numpy as np

    from harness.datasets import DatasetError, cifar, open_source

    rng = np.random.default_rng(0)
    root = tmp / "data"
    for name in (*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES):
        entry = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [1] * 4}
        path = root / "cifar10" / cifar.BATCH_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(entry, protocol=2))
    batch = root / "cifar10" / cifar.BATCH_DIR / "data_batch_1"
    for i, data in enumerate(_mutations(batch.read_bytes(), 1)):
        batch.write_bytes(data)
        yield _read(open_source, DatasetError, "cifar10", root, f"cifar batch #{i}", "data_batch_1")
    mnist = root / "mnist"
    mnist.mkdir()
    images = b"\0\0\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (5, 28, 28)) + bytes(3920)
    (mnist / "train-labels-idx1-ubyte").write_bytes(
        b"\0\0\x08\x01" + (5).to_bytes(4, "big") + bytes(5)
    )
    target = mnist / "train-images-idx3-ubyte.gz"
    for i, data in enumerate(_mutations(images, 2)):
        for kind, payload in (("gz", gzip.compress(data)), ("cut gz", gzip.compress(data)[:-5])):
            target.write_bytes(payload)
            yield _read(open_source, DatasetError, "mnist", root, f"idx {kind} #{i}", "mnist")


def _read(open_source: Any, error: type, name: str, root: Path, case: str, where: str) -> Case:
    try:
        open_source(name, "train", root, synthetic=False)
        return Case("datasets", case, True, note="read (the change was harmless)")
    except error as exc:
        ok = where in str(exc) and "download" in str(exc)
        return Case("datasets", case, ok, note=str(exc)[:100])
    except BaseException as exc:  # exactly what must not happen
        return Case("datasets", case, False, note=f"{type(exc).__name__}: {exc}"[:100])


# Plugins -------------------------------------------------------------------------------


def plugins(tmp: Path) -> Iterator[Case]:
    from harness import hookimpl
    from harness.backend import BackendInfo, Trainer
    from harness.plugins import PluginManager

    def info(name: str) -> BackendInfo:
        return BackendInfo(name, name, (), "-", "x:Y")

    class Good:
        __name__ = "good"

        @hookimpl
        def harness_register_backends(self, register: Any) -> None:
            register(info("good"))

    class Misspelt:
        __name__ = "misspelt"

        @hookimpl
        def harness_register_backend(self, register: Any) -> None:
            register(info("never"))

    class Raising:
        __name__ = "raising"

        @hookimpl
        def harness_register_backends(self, register: Any) -> None:
            raise RuntimeError("boom")

    class Clash:
        __name__ = "clash"

        @hookimpl
        def harness_register_backends(self, register: Any) -> None:
            register(info("good"))

    class Observer:
        __name__ = "observer"

        @hookimpl
        def harness_run_started(self, spec: Any, run_dir: Any) -> None:
            raise ValueError("observer broke")

    for plugin, key in ((Misspelt(), "misspelt"), (Raising(), "raising"), (Clash(), "clash")):
        pm = PluginManager(entry_points=False, plugins=(Good(), plugin))
        ok = set(pm.backends) == {"good"} and key in pm.load_errors
        yield Case("plugins", key, ok, note=pm.load_errors.get(key, "")[:100])
    pm = PluginManager(entry_points=False, plugins=(Good(), Observer()))
    import contextlib
    import io

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            pm.run_started(None, tmp)  # type: ignore[arg-type]
        yield Case("plugins", "observer raises", "observer" in pm.load_errors)
    except Exception as exc:
        yield Case("plugins", "observer raises", False, note=repr(exc))

    class Forgetful(Trainer):
        framework_info = device_batch = train_step = loss_value = evaluate = lambda self, *a: None

    try:
        Forgetful(None)  # type: ignore[arg-type]
        yield Case("plugins", "trainer without synchronize", False)
    except TypeError as exc:
        yield Case("plugins", "trainer without synchronize", "synchronize" in str(exc))


GROUPS: dict[str, Callable[[Path], Iterator[Case]]] = {
    "cli": cli_mistakes,
    "sweep": sweep_mistakes,
    "read-only": read_only,
    "strict-json": strict_json,
    "datasets": datasets,
    "plugins": plugins,
    "sweep-race": sweep_race,
    "signals": signals,
    "stores": stores,
    "full-disk": full_disk,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    parser.add_argument("--only", help=f"comma-separated groups: {', '.join(GROUPS)}")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(GROUPS)
    unknown = [g for g in chosen if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {unknown}; choose from: {', '.join(GROUPS)}")
    sys.path.insert(0, str(ROOT))
    tried = handled = lost = skipped = 0
    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as folder:
        for group in chosen:
            work = Path(folder) / group
            work.mkdir()
            for case in GROUPS[group](work):
                if case.skipped:
                    skipped += 1
                    print(f"skipped {case.group}: {case.name}: {case.note}")
                    continue
                tried += 1
                handled += case.handled
                lost += case.lost
                if args.verbose or not case.handled or case.lost:
                    mark = "ok  " if case.handled and not case.lost else "FAIL"
                    print(f"{mark} {case.group}: {case.name}: {case.note}", flush=True)
    extra = f" (skipped {skipped})" if skipped else ""
    print(f"tried {tried} handled {handled} lost {lost}{extra}")
    return 0 if handled == tried and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
