"""The ``run`` options are RunSpec's fields: every field is an option (or marked as none),
the parser's defaults are the dataclass's, and a spec goes to flags and back unchanged.
The subcommands live in harness.cli; the packages below it do not import it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from harness.cli import run as cli_run
from harness.cli.main import COMMANDS, build_parser
from harness.errors import InvalidValue
from harness.spec import ONNX_FILE_MODEL, RunSpec

FIELDS = dataclasses.fields(RunSpec)
HARNESS = Path(cli_run.__file__).resolve().parents[1]


def parse(*argv: str) -> RunSpec:
    parser, _ = build_parser()
    return cli_run.spec_from_args(parser.parse_args(["run", *argv]))


def to_argv(spec: RunSpec) -> list[str]:
    """The flags that ask for ``spec``: one per field that differs from its default."""
    default = RunSpec(spec.tool, spec.model, spec.dataset)
    argv: list[str] = []
    for f in FIELDS:
        value, cli = getattr(spec, f.name), f.metadata["cli"]
        if cli is None:  # batch_search: --batch-size auto (test_batch_size_auto)
            continue
        flag = cli["flags"][-1]
        if f.name in ("model", "dataset") and spec.onnx_file:
            continue  # an --onnx-file run names neither
        if f.name not in ("tool", "model", "dataset") and value == getattr(default, f.name):
            continue
        if isinstance(value, bool):
            argv.append(flag if value else cli["negative"])
        elif isinstance(value, dict):
            for key, item in value.items():
                argv += [flag, f"{key}={item}"]
        elif isinstance(value, list):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, "0" if value is None else str(value)]  # --timeout 0: none
    return argv


def test_every_field_is_an_option_or_marked_as_none() -> None:
    parser, _ = build_parser()
    run = next(a for a in parser._actions if a.dest == "command").choices["run"]
    dests = {a.dest for a in run._actions}
    flags = [flag for f in FIELDS if f.metadata.get("cli") for flag in f.metadata["cli"]["flags"]]
    assert len(flags) == len(set(flags))
    for f in FIELDS:
        assert "cli" in f.metadata, f"RunSpec.{f.name}: give it cli(...) or {{'cli': None}}"
        if f.metadata["cli"] is not None:
            assert f.name in dests
    assert set(cli_run._FROM_CLI) <= {f.name for f in cli_run.run_options()}
    assert dests - {f.name for f in FIELDS} == {"help", "json", "dry_run"}


def test_the_parser_defaults_are_the_dataclass_defaults() -> None:
    assert parse("--tool", "t", "--model", "lenet", "--dataset", "mnist") == RunSpec(
        "t", "lenet", "mnist"
    )


def test_a_spec_goes_to_flags_and_back() -> None:
    spec = RunSpec(
        "t", "lenet", "mnist", num_gpus=2, gpu="0,1", cpu_devices=3, threads=4, nodes=2,
        launcher="local-nodes", task="inference", batch_size=16, learning_rate=0.5,
        warmup_steps=0, steps=7, epochs=2, precision="bf16", seed=9, compile=True,
        validate=False,
        data_dir="d", data_workers=5, image_size=64, synthetic=True, repeats=1, sync_every=1,
        min_time_s=1.5, max_time_s=2.5, timeout_s=None, monitor_interval_s=0.5,
        idle_baseline_s=0.0, require_quiet_s=5.0, output_dir="out", python="py",
        options={"a": "1", "b": "x=y"},
        tags={"k": "v"}, dump_weights="w", weights="w.npz", max_repeats=4, denormals="flush",
    )  # fmt: skip
    different = {
        f.name for f in FIELDS if getattr(spec, f.name) != getattr(RunSpec("", "", ""), f.name)
    }
    assert different == {f.name for f in FIELDS} - {"onnx_file", "input_shape", "batch_search"}
    assert parse(*to_argv(spec)) == spec
    onnx = RunSpec(
        "onnxruntime", ONNX_FILE_MODEL, "synthetic", task="inference", onnx_file="m.onnx",
        input_shape=[3, 8, 8], validate=True, synthetic=False,
    )  # fmt: skip
    assert parse(*to_argv(onnx)) == onnx


def test_a_batch_size_list_is_one_spec_per_size() -> None:
    parser, _ = build_parser()
    args = parser.parse_args(
        ["run", *to_argv(RunSpec("t", "lenet", "mnist")), "--batch-size", "8,1"]
    )
    specs = cli_run.specs_from_args(args)
    assert [s.batch_size for s in specs] == [8, 1]
    assert specs[0] == dataclasses.replace(specs[1], batch_size=8)


def _imports(package: str) -> set[str]:
    names: set[str] = set()
    for path in (HARNESS / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("package", ["machine", "ops", "run", "results", "sweep"])
def test_the_lower_packages_do_not_import_the_cli(package: str) -> None:
    assert not {n for n in _imports(package) if n.startswith("harness.cli")}


def test_machine_does_not_import_ops() -> None:
    assert not {n for n in _imports("machine") if n.startswith("harness.ops")}


def test_every_subcommand_is_a_module_of_harness_cli() -> None:
    parser, handlers = build_parser()
    modules = {handler.__module__ for handler in handlers.values()}
    assert modules == {f"harness.cli.{name}" for name in COMMANDS}
    assert set(handlers) == set(next(a for a in parser._actions if a.dest == "command").choices)


def test_batch_size_auto_is_a_search_not_a_size() -> None:
    parser, _ = build_parser()
    base = to_argv(RunSpec("t", "lenet", "mnist"))
    args = parser.parse_args(["run", *base, "--batch-size", "auto:bisect:max=512"])
    (spec,) = cli_run.specs_from_args(args)
    assert (spec.batch_size, spec.batch_search) == (None, "auto:bisect:max=512")
    for wrong in ("auto:bisekt", "auto:max=0", "auto:start=8:max=4", "auto:time=-1"):
        with pytest.raises(InvalidValue, match="--batch-size"):
            cli_run.specs_from_args(parser.parse_args(["run", *base, "--batch-size", wrong]))
