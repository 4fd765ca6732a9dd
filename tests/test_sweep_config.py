"""Sweep files: parsing, expansion into cells, parameter precedence, filters, mistakes."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.spec import STUDY_DEFAULTS
from harness.sweep.config import builtin_names, fingerprint, load, parse, parse_value, select

BASE = {
    "sweep": {"name": "t", "tools": ["pytorch", "jax"], "hardware": ["cpu", "1gpu", 2]},
    "defaults": {"steps": 20, "warmup_steps": 2, "repeats": 2, "options": {"a": "1"}},
    "tool": {"jax": {"options": {"xla": True}, "lr": 0.5}},
    "workloads": [
        {"dataset": "mnist", "model": "lenet", "batch_size": 16, "options": {"b": 2}},
        {"dataset": "cifar10", "model": ["alexnet", "vgg16"], "steps": 7},
        {"dataset": "cifar10", "model": "vgg16", "batch_size": 4, "timeout": 0},
    ],
}


def test_cells_and_parameter_precedence() -> None:
    cells = parse(BASE, "t.toml").cells()
    assert len(cells) == 3 * 2 * 3  # pairs x tools x hardware
    assert [c.key for c in cells[:6]] == [
        "pytorch/lenet/mnist/CPU",
        "pytorch/lenet/mnist/1 GPU",
        "pytorch/lenet/mnist/2 GPUs",
        "jax/lenet/mnist/CPU",
        "jax/lenet/mnist/1 GPU",
        "jax/lenet/mnist/2 GPUs",
    ]
    by_key = {c.key: c.spec for c in cells}
    lenet = by_key["jax/lenet/mnist/2 GPUs"]
    assert (lenet.num_gpus, lenet.batch_size, lenet.steps, lenet.repeats) == (2, 16, 20, 2)
    assert lenet.learning_rate == 0.5  # [tool.jax] lr alias
    assert lenet.options == {"a": "1", "xla": "true", "b": "2"}  # merged, as strings
    assert lenet.tags == {"sweep_cell": "jax/lenet/mnist/2 GPUs"}
    vgg = by_key["pytorch/vgg16/cifar10/CPU"]
    assert (vgg.batch_size, vgg.steps, vgg.timeout_s) == (4, 7, None)  # later entries win
    alexnet = by_key["pytorch/alexnet/cifar10/1 GPU"]
    assert (alexnet.batch_size, alexnet.steps, alexnet.learning_rate) == (None, 7, None)
    overridden = parse(BASE, "t.toml").cells({"steps": 3, "repeats": 1})
    assert {(c.spec.steps, c.spec.repeats) for c in overridden} == {(3, 1)}


def test_hardware_tables_labels_and_shorthands() -> None:
    data = {
        "sweep": {"tools": ["pytorch"], "models": ["lenet"], "datasets": ["mnist"]},
        "hardware": [
            {"num_gpus": -1, "threads": 12},
            {"num_gpus": -1, "cpu_devices": 2},
            {"name": "P100 pair", "num_gpus": 2, "gpu": "P100"},
            {"num_gpus": 1, "gpu": "K20m"},
        ],
    }
    cells = parse(data, "hw.toml").cells()
    assert [c.hardware for c in cells] == [
        "CPU (12 threads)",
        "CPU x2",
        "P100 pair",
        "1 GPU [K20m]",
    ]
    assert cells[0].spec.threads == 12 and cells[1].spec.cpu_devices == 2
    assert cells[2].spec.gpu == "P100" and cells[2].spec.tags["hardware_label"] == "P100 pair"
    assert "hardware_label" not in cells[1].spec.tags  # "CPU x2" is what RunSpec says
    assert (
        parse({"sweep": {"tools": ["x"], "models": ["lenet"], "datasets": ["mnist"]}})
        .hardware[0]
        .label
        == "CPU"
    )  # default: the CPU only
    short = {"sweep": {"tools": ["x"], "hardware": [-1, "gpu", "4 GPUs", "2gpu"],
                       "models": ["lenet"], "datasets": ["mnist"]}}  # fmt: skip
    assert [h.num_gpus for h in parse(short).hardware] == [-1, 1, 4, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sweep": {"tools": []}}, "sweep.tools must list at least one tool"),
        ({"extra": 1}, "unknown top-level key(s) extra"),
        ({"defaults": {"bogus": 1}}, "unknown parameter 'bogus'"),
        ({"defaults": {"steps": "ten"}}, "steps must be a int"),
        ({"defaults": {"synthetic": 1}}, "synthetic must be a bool"),
        ({"defaults": {"num_gpus": 2}}, "num_gpus is set by the sweep's matrix"),
        ({"tool": {"mxnet": {"steps": 1}}}, "[tool.mxnet] names a tool that sweep.tools does not"),
        ({"sweep": {"tools": ["a"], "hardware": ["cpu", "cpu"]}}, "two hardware entries are"),
        ({"sweep": {"tools": ["a"], "hardware": ["tpu"]}}, "'tpu' is not -1, N"),
        ({"sweep": {"tools": ["a"], "hardware": [0]}}, "-1 is the CPU, N >= 1 GPUs"),
        ({"hardware": [{"num_gpus": 1}]}, "give sweep.hardware or [[hardware]] tables, not both"),
        ({"workloads": [{"model": "lenet"}]}, "[[workloads]] #1 needs a dataset and a model"),
        ({"sweep": {"tools": ["a"], "models": ["lenet"]}, "workloads": []}, "go together"),
        ({"sweep": {"tools": ["a"], "name": "a b"}}, "sweep.name must be letters"),
    ],
)
def test_mistakes_name_the_key(change: dict, message: str) -> None:
    data = {**BASE, **change}
    if "sweep" in change:
        data["sweep"] = {**BASE["sweep"], **change["sweep"]}
        data["tool"] = {}
    with pytest.raises(UsageError) as info:
        parse(data, "bad.toml")
    assert str(info.value).startswith("bad.toml: ")
    assert message in str(info.value)


def test_filters_and_fingerprint() -> None:
    config = parse(BASE, "t.toml")
    cells = config.cells()
    chosen = select(cells, tools=["jax"], models=["lenet", "vgg16"], hardware=["CPU"])
    assert [c.key for c in chosen] == ["jax/lenet/mnist/CPU", "jax/vgg16/cifar10/CPU"]
    assert [c.position for c in chosen] == [0, 1]
    with pytest.raises(UsageError, match="--tools: mxnet not in this sweep; it has: pytorch, jax"):
        select(cells, tools=["mxnet"])
    same = fingerprint("t", parse(BASE, "t.toml").cells())
    assert fingerprint("t", cells) == same
    assert fingerprint("t", chosen) != same
    assert fingerprint("t", config.cells({"steps": 5})) != same


def test_a_plan_keeps_the_fingerprint_an_earlier_version_gave_it() -> None:
    # 050cbfd3f45797f8: BASE's fingerprint in version 0.1.0 before --compile,
    # --max-repeats and --batch-size auto (commit 11cbed6), so its sweeps still resume
    cells = parse(BASE, "t.toml").cells()
    assert fingerprint("t", cells) == "050cbfd3f45797f8"
    assert fingerprint("t", parse(BASE, "t.toml").cells({"compile": True})) != "050cbfd3f45797f8"


def test_builtin_study_sweep_has_the_studys_parameters() -> None:
    assert {"study", "smoke"} <= set(builtin_names())
    config = load("study")
    assert config.tools == ["pytorch", "tensorflow", "jax", "mxnet"]
    assert [h.label for h in config.hardware] == ["CPU", "1 GPU", "2 GPUs"]
    assert len(config.pairs) == 9
    iterations = {"mnist": 938, "cifar10": 390, "imagenet": 300}
    family = {"mnist": "mnist", "cifar10": "cifar", "imagenet": "imagenet"}
    cells = config.cells()
    assert len(cells) == 4 * 9 * 3
    for cell in cells:
        batch, lr = STUDY_DEFAULTS[(family[cell.dataset], cell.model)]
        assert (cell.spec.batch_size, cell.spec.learning_rate) == (batch, lr), cell.key
        assert cell.spec.steps == iterations[cell.dataset]
        assert cell.spec.repeats == 3


def test_load_errors_and_values(tmp_path) -> None:
    with pytest.raises(UsageError, match="no sweep file 'nosuch'; give a path or a built-in"):
        load("nosuch")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load(str(bad))
    assert [parse_value(v) for v in ("3", "0.5", "true", "fp16", '"x"')] == [
        3,
        0.5,
        True,
        "fp16",
        "x",
    ]


def _two_workloads(second: dict) -> dict:
    return {
        "sweep": {"name": "t", "tools": ["pytorch"], "hardware": ["cpu"]},
        "workloads": [{"dataset": "mnist", "model": "lenet", "batch_size": 16}, second],
    }


def test_one_pair_in_two_workloads_keeps_both_batch_sizes_and_tasks() -> None:
    second = {"dataset": "mnist", "model": "lenet", "batch_size": [32, 16], "task": "inference"}
    cells = parse(_two_workloads(second), "t.toml").cells()
    assert [(c.key, c.spec.batch_size, c.spec.task) for c in cells] == [
        ("pytorch/lenet/mnist/CPU/inference/batch16", 16, "inference"),
        ("pytorch/lenet/mnist/CPU/inference/batch32", 32, "inference"),
    ]
    both = _two_workloads({"dataset": "mnist", "model": "lenet", "batch_size": 32})
    assert [c.spec.batch_size for c in parse(both, "t.toml").cells()] == [16, 32]


def test_one_pair_in_two_workloads_with_two_values_of_another_parameter_is_refused() -> None:
    second = {"dataset": "mnist", "model": "lenet", "lr": 0.1}
    config = _two_workloads(second)
    config["workloads"][0]["lr"] = 0.5
    with pytest.raises(UsageError, match=r"#1 and #2 both set learning_rate for mnist/lenet"):
        parse(config, "t.toml").cells()


@pytest.mark.parametrize(
    "filters",
    [{}, {"tools": ["jax"]}, {"models": ["vgg16"], "hardware": ["CPU", "2 GPUs"]}],
)
def test_count_is_the_number_of_cells_without_building_them(filters: dict) -> None:
    config = parse({**BASE, "defaults": {"batch_size": [1, 2, 4]}}, "t.toml")
    assert config.count({}, filters) == len(select(config.cells(), **filters))


def test_batch_size_auto_is_the_cells_batch_search() -> None:
    data = {**BASE, "defaults": {"batch_size": "auto:bisect:max=256"}}
    specs = {c.spec.batch_search for c in parse(data, "t.toml").cells()}
    assert specs == {"auto:bisect:max=256"}
