"""The GPU acceptance script (scripts/gpu_acceptance.py), without a GPU.

Its plan is data made by pure functions and its checks are pure functions over stored
RunResults, so both are tested here; the script itself runs end to end against the fake
GPU machine (HARNESS_NVML_MODULE=fake_gpu_machine) and the fake backend, once in this
interpreter and once started again from a "bare" one (the hand-over after installing).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fake_cli import harness_env
from sweep_helpers import figure, make_result, with_spec

from harness.store.schema import RepeatRecord, Resources, ResourceTimed, RunResult
from harness.store.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_acceptance.py"
FOUR = ("pytorch", "tensorflow", "jax", "mxnet")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_acceptance"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ga = _load()

FEATURES = ga.Features(
    backends=("jax", "mxnet", "pytorch", "tensorflow"),
    parity_tools=("jax", "mxnet", "pytorch", "tensorflow"),
    setup_tools=FOUR,
    verify=True,
    inference=False,
)
H200 = ga.GpuInfo(0, "NVIDIA H200", 143771, (9, 0))


def machine(*gpus, **fields):
    interpreters = tuple((t, f"/envs/{t}/bin/python") for t in FOUR)
    base = dict(
        gpus=tuple(gpus),
        python="/usr/bin/python3",
        python_version=(3, 11),
        interpreters=interpreters,
        harness_python="/envs/pytorch/bin/python",
    )
    base.update(fields)
    return ga.Machine(**base)


def plan_for(tmp_path: Path, *gpus, features=FEATURES, **settings):
    chosen = dict(tools=ga.default_tools(features), output_dir=tmp_path)
    chosen.update(settings)
    return ga.build_plan(ga.Settings(**chosen), features, machine(*gpus))


def option(command, name):
    return command[command.index(name) + 1]


# -- the plan -------------------------------------------------------------------------------


def test_the_plan_for_one_gpu(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, H200)
    kinds = [s.kind for s in plan.steps]
    assert kinds[:10] == ["preflight"] + ["install"] * 4 + ["probe"] * 4 + ["doctor"]
    assert kinds[-3:] == ["memory", "verify", "report"]
    assert plan.steps[0].fail is None and "NVIDIA H200 (cc 9.0" in plan.steps[0].expect

    installs = [s for s in plan.steps if s.kind == "install"]
    assert [s.tool for s in installs] == list(FOUR)  # scripts/setup_envs.sh, GPU builds
    for step in installs:
        assert step.commands == (("bash", "scripts/setup_envs.sh", step.tool),)
        assert ("HARNESS_GPU", "1") in step.env and ("PYTHON", "/usr/bin/python3") in step.env
    assert [s.optional for s in installs] == [False, False, False, True]  # mxnet may be absent

    runs = [s for s in plan.steps if s.kind == "run" and s.run]
    assert len(runs) == 4 * 2 * 3  # tools x (LeNet/MNIST, ResNet-50/CIFAR-10) x precisions
    assert {(s.run.model, s.run.dataset) for s in runs} == {
        ("lenet", "mnist"),
        ("resnet50", "cifar10"),
    }
    for step in runs:
        (command,) = step.commands
        assert command[:4] == ("/envs/pytorch/bin/python", "-m", "harness", "run")
        assert option(command, "--tool") == step.run.tool
        assert option(command, "--num-gpus") == "1" and option(command, "--gpu") == "0"
        assert option(command, "--precision") == step.run.precision
        assert option(command, "--output-dir") == str(tmp_path)  # one store for everything
        assert option(command, "--repeats") == ("2" if step.run.precision == "fp32" else "1")
        assert option(command, "--warmup-steps") == "10"
        assert (option(command, "--min-time"), option(command, "--max-time")) == ("3", "5")
        assert "--synthetic" in command and "--json" in command
        assert option(command, "--tag").startswith("acceptance=")
        assert step.refusable == (step.run.precision != "fp32")  # fp32 must run
        assert step.refuse is None  # an H200 does every precision

    skipped = {s.key: s.skip for s in plan.steps if s.skip}
    assert skipped == {
        "runs/inference": "this harness has no `--task inference` (`python -m harness run --help`)",
        "runs/2gpu": "this machine has 1 GPU(s)",
    }
    (verify,) = [s for s in plan.steps if s.kind == "verify"]
    assert verify.commands == (
        (
            "/envs/pytorch/bin/python", "-m", "harness", "verify", "--gpu",
            "--tools", "pytorch,tensorflow,jax,mxnet", "--models", "lenet,resnet50",
        ),
    )  # fmt: skip
    report = plan.steps[-1].commands[0]
    assert option(report, "--store") == str(tmp_path / "results.sqlite")
    assert dict(plan.env)["HARNESS_PYTHON_MXNET"] == "/envs/mxnet/bin/python"


def test_the_plan_for_two_gpus(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, H200, replace_index(H200, 1))
    runs = [s for s in plan.steps if s.kind == "run" and s.run]
    assert len(runs) == 2 * 24
    one = [s for s in runs if s.run.num_gpus == 1]
    two = [s for s in runs if s.run.num_gpus == 2]
    assert len(one) == len(two) == 24
    assert runs.index(two[0]) > runs.index(one[-1])  # 1 GPU first, then 2
    for step in two:
        command = step.commands[0]
        assert option(command, "--num-gpus") == "2" and option(command, "--gpu") == "0,1"
        assert step.title.endswith(f"2 GPUs {step.run.precision}")
    assert not any(s.key == "runs/2gpu" for s in plan.steps)
    assert len({s.key for s in plan.steps}) == len(plan.steps)
    # --max-gpus 1: no 2-GPU runs even on two
    assert not any(
        s.run and s.run.num_gpus == 2 for s in plan_for(tmp_path, H200, max_gpus=1).steps
    )


def replace_index(gpu, index):
    return ga.GpuInfo(index, gpu.name, gpu.memory_mib, gpu.compute_capability)


def test_precisions_a_gpu_cannot_do_are_refused_by_the_plan(tmp_path: Path) -> None:
    v100 = ga.GpuInfo(0, "Tesla V100-SXM2-16GB", 16160, (7, 0))
    plan = plan_for(tmp_path, v100)
    runs = [s for s in plan.steps if s.kind == "run" and s.run]
    refused = [s for s in runs if s.refuse]
    assert {s.run.precision for s in refused} == {"bf16"}
    assert len(refused) == 8 and all(not s.commands for s in refused)
    assert refused[0].refuse == (
        "bf16 needs compute capability 8.0 or newer; GPU 0 (Tesla V100-SXM2-16GB) is 7.0"
    )
    unknown = ga.GpuInfo(0, "GPU 0")  # no capability known: the harness decides
    assert not any(s.refuse for s in plan_for(tmp_path, unknown).steps)
    assert ga.refusal_for_gpu("fp32", [ga.GpuInfo(0, "old", None, (3, 5))]) is None


def test_the_plan_without_gpu_or_with_old_python_fails_its_preflight(tmp_path: Path) -> None:
    settings = ga.Settings(tools=FOUR, output_dir=tmp_path)
    bare = machine(gpu_reason="nvidia-smi not found", python_version=(3, 9), venv_ok=False,
                   venv_reason="no ensurepip")  # fmt: skip
    plan = ga.build_plan(settings, FEATURES, bare)
    fail = plan.steps[0].fail
    assert "3.9 is too old" in fail and "no GPU (nvidia-smi not found)" in fail
    assert "no ensurepip" in fail
    assert not any(s.kind == "run" and s.run for s in plan.steps)


def test_escape_hatches_python_for_and_skip_install(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, H200, python_for=(("mxnet", "/opt/mx/bin/python"),))
    (mxnet,) = [s for s in plan.steps if s.key == "install/mxnet"]
    assert mxnet.skip == "--python-for mxnet=/opt/mx/bin/python" and not mxnet.commands
    plan = plan_for(tmp_path, H200, skip_install=True)
    assert not any(s.kind == "install" for s in plan.steps)
    assert any("--skip-install" in n for n in plan.notes)
    present = ga.build_plan(
        ga.Settings(tools=FOUR, output_dir=tmp_path), FEATURES,
        machine(H200, existing_envs=frozenset({"jax"})),
    )  # fmt: skip
    assert [s.key for s in present.steps if s.kind == "install" and s.skip] == ["install/jax"]


def test_inference_runs_follow_the_cli_and_the_backends_tasks(tmp_path: Path) -> None:
    onnx = ga.Features(
        backends=("onnxruntime", "pytorch"),
        parity_tools=("onnxruntime", "pytorch"),
        setup_tools=FOUR,
        verify=True,
        inference=False,
        tasks=(("onnxruntime", ("inference",)), ("pytorch", ("train", "inference"))),
    )
    assert ga.default_tools(onnx) == ("pytorch", "onnxruntime")
    plan = plan_for(tmp_path, H200, features=onnx)
    (install,) = [s for s in plan.steps if s.key == "install/onnxruntime"]
    assert any("onnxruntime-gpu" in c for c in install.commands[1])
    assert {s.run.tool for s in plan.steps if s.run} == {"pytorch"}
    assert "does inference only" in next(s.skip for s in plan.steps if s.key == "runs/onnxruntime")

    with_task = ga.Features(**{**onnx.__dict__, "inference": True})
    plan = plan_for(tmp_path, H200, features=with_task)
    infer = [s for s in plan.steps if s.run and s.run.task == "inference"]
    assert {s.run.tool for s in infer} == {"pytorch", "onnxruntime"}
    assert all(option(s.commands[0], "--task") == "inference" for s in infer)
    train = [s for s in plan.steps if s.run and s.run.task == "training"]
    assert {s.run.tool for s in train} == {"pytorch"} and "--task" not in train[0].commands[0]


def test_features_of_this_checkout() -> None:
    features = ga.detect_features(None)  # from the files
    assert set(FOUR) <= set(features.backends) and set(FOUR) <= set(features.setup_tools)
    assert set(FOUR) <= set(features.parity_tools)
    assert features.verify  # harness/cli/verify.py


def run_script(*args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=harness_env(**env),
        cwd=REPO,
    )


@pytest.mark.parametrize("gpus", [1, 2])
def test_dry_run_prints_the_plan(tmp_path: Path, gpus: int) -> None:
    out = run_script("--dry-run", "--gpus", str(gpus), "--output-dir", str(tmp_path),
                     "--tools", "pytorch,mxnet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"machine: {gpus} GPU(s)" in text
    assert "bash scripts/setup_envs.sh pytorch" in text and "HARNESS_GPU=1" in text
    assert "-m harness doctor --json" in text
    assert "train pytorch lenet/mnist 1 GPU fp32" in text
    assert "--num-gpus 1 --gpu 0 --precision bf16" in text
    assert "train mxnet resnet50/cifar10 1 GPU fp16" in text
    assert "-m harness verify --gpu --tools pytorch,mxnet --models lenet,resnet50" in text
    assert f"then: {sys.executable} -m harness report --store {tmp_path}/results.sqlite" in text
    if gpus == 1:
        assert "runs on 2 GPUs  -> skipped: this machine has 1 GPU(s)" in text
        assert "--num-gpus 2" not in text
    else:
        assert "train pytorch resnet50/cifar10 2 GPUs fp16" in text
        assert "--num-gpus 2 --gpu 0,1 --precision fp32" in text
    assert not (tmp_path / "results.sqlite").exists()  # nothing ran
    assert run_script("--gpus", "1").returncode == 2  # pretend GPUs only for a dry run


def test_dry_run_in_a_bare_python_plans_from_the_files(tmp_path: Path) -> None:
    """Without the harness importable (python -S: no site-packages), as on a fresh GPU
    machine: the plan comes from the checkout's files and runs the harness in .venvs."""
    out = subprocess.run(
        [sys.executable, "-S", str(SCRIPT), "--dry-run", "--gpus", "1", "--output-dir",
         str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"harness runs in: {REPO}/.venvs/pytorch/bin/python" in out.stdout
    assert "(from the source)" in out.stdout
    assert "bash scripts/setup_envs.sh tensorflow" in out.stdout


# -- the checks of a stored run ---------------------------------------------------------------


def gpu_result(**fields) -> RunResult:
    figures = dict(num_gpus=1, power=(300.0, 5.0), memory=(9000.0, 10.0))
    figures.update(fields)
    result = make_result("pytorch", "resnet50", "cifar10", **figures)
    if result.summary.gpu_power_w is not None:
        result.summary.energy_j = figure(1500.0, 10.0)
    return result


EXPECT = ga.RunExpectation("pytorch", "resnet50", "cifar10", (0,), "fp32")


def test_a_run_with_power_energy_and_memory_passes() -> None:
    verdict = ga.check_run(gpu_result(), EXPECT)
    assert verdict.ok and verdict.failures == () and verdict.notes == ()
    assert ga.run_figures(gpu_result()) == "100 img/s, 300 W, 1,500 J, 9,000 MiB"


def test_a_run_without_gpu_figures_fails_with_the_reason() -> None:
    bare = gpu_result(power=None, memory=None)
    bare.summary.resource_notes = ["GPU figures: none (NVML is not available: no driver)"]
    failures = ga.check_run(bare, EXPECT).failures
    assert failures == (
        "no GPU power: summary.gpu_power_w is empty "
        "(GPU figures: none (NVML is not available: no driver))",
        "no energy: summary.energy_j is empty "
        "(GPU figures: none (NVML is not available: no driver))",
        "no GPU memory: summary.gpu_memory_mib is empty "
        "(GPU figures: none (NVML is not available: no driver))",
    )
    only_memory = gpu_result(power=None)
    assert [f.split(":")[0] for f in ga.check_run(only_memory, EXPECT).failures] == [
        "no GPU power",
        "no energy",
    ]


def test_implausible_figures_and_another_run_fail() -> None:
    hot = gpu_result(power=(5000.0, 1.0), memory=(50000.0, 1.0))  # a 40 GiB A100
    assert ga.check_run(hot, EXPECT).failures == (
        "implausible GPU power 5000.0 W for 1 GPU(s)",
        "GPU memory 50000 MiB exceeds the GPUs' 40960 MiB",
    )
    zero = gpu_result(memory=(0.0, 0.0))
    assert ga.check_run(zero, EXPECT).failures == ("implausible GPU memory 0 MiB",)
    elsewhere = ga.RunExpectation("pytorch", "resnet50", "cifar10", (1,), "fp32")
    assert ga.check_run(gpu_result(), elsewhere).failures == ("ran on GPU(s) (0,), expected (1,)",)
    bf16 = with_spec(gpu_result(), precision="bf16")
    assert "expected" in ga.check_run(bf16, EXPECT).failures[0]
    oom = gpu_result(status="oom")
    assert ga.check_run(oom, EXPECT).failures == ("status oom (0/3 ok): RuntimeError: it went oom",)


def repeat(source: str, energy: float, power: float = 300.0, seconds: float = 5.0, **gpu):
    timed = {"duration_s": seconds, "samples": 50, "energy_source": source}
    counter = source == "nvml_counter"  # the counter, and the power integral checking it
    return RepeatRecord(
        status="ok",
        repeat=1,
        resources=Resources(
            gpu={"phases": {"timed": timed}, **gpu},
            timed=ResourceTimed(
                gpu_power_w=power,
                energy_j=energy,
                energy_counter_j=energy if counter else None,
                energy_integral_j=energy * 0.98,
                energy_disagreement=0.02 if counter else None,
            ),
        ),
    )


def test_energy_above_idle_the_counter_check_and_energy_per_gpu() -> None:
    result = gpu_result()
    result.summary.idle_power_w = figure(60.0, 0.0, n=1)
    result.summary.energy_dynamic_j = figure(1200.0, 10.0)
    result.summary.joules_per_image = figure(0.05, 0.001)
    result.summary.joules_per_image_dynamic = figure(0.04, 0.001)
    result.summary.energy_disagreement = figure(0.02)
    result.repeats = [repeat("nvml_counter", 1500.0)]
    assert ga.check_run(result, EXPECT).ok
    assert ga.run_figures(result) == (
        "100 img/s, 300 W, 1,500 J, 9,000 MiB, 0.0500 J/image (above idle 0.0400 J/image), "
        "idle 60 W, counter vs power integral 2.0%"
    )
    timed = result.repeats[0].resources.timed
    timed.energy_disagreement, timed.energy_disagreement_flagged = 0.08, True
    assert ga.check_run(result, EXPECT).notes == (
        "repeat 1: GPU energy counter and power integral differ by 8.0%",
    )
    timed.energy_disagreement = None  # a counter nothing checked
    result.summary.energy_dynamic_j = None
    result.summary.idle_power_w = figure(5000.0, 0.0, n=1)
    assert ga.check_run(result, EXPECT).failures == (
        "implausible idle power 5000.0 W for 1 GPU(s)",
        "no dynamic energy, though an idle power was measured",
        "repeat 1: no power integral to check NVML's energy counter against",
    )
    two = gpu_result(num_gpus=2)
    two.repeats = [repeat("nvml_counter", 1500.0)]
    pair = ga.RunExpectation("pytorch", "resnet50", "cifar10", (0, 1), "fp32")
    assert ga.check_run(two, pair).failures == ("repeat 1: energy of 0 GPU(s), expected 2",)
    two.repeats[0].resources.timed.energy_per_device_j = {"0": 700.0, "1": 700.0}
    assert ga.check_run(two, pair).failures == (
        "repeat 1: the GPUs' energies add up to 1400.0 J, not 1500.0 J",
    )
    two.repeats[0].resources.timed.energy_per_device_j = {"0": 700.0, "1": 800.0}
    assert ga.check_run(two, pair).ok


def test_energy_must_come_from_the_counter_and_agree_with_power() -> None:
    result = gpu_result()
    result.environment["hygiene"] = {"gpus": [{"index": 0, "energy_counter": True}]}
    result.repeats = [repeat("nvml_counter", 1500.0)]
    assert ga.check_run(result, EXPECT).ok
    result.repeats = [repeat("integrated_power", 1500.0)]
    assert ga.check_run(result, EXPECT).failures == (
        "repeat 1: energy from integrated_power, though the GPUs have NVML's energy counter",
    )
    result.environment["hygiene"]["gpus"][0]["energy_counter"] = False  # a pre-Volta GPU
    assert ga.check_run(result, EXPECT).ok
    result.repeats = [repeat("nvml_counter", 6000.0)]  # 4x power x time
    assert ga.check_run(result, EXPECT).failures == (
        "repeat 1: energy 6000.0 J is 4.00x mean power 300.0 W x 5.00 s",
    )
    result.repeats = [repeat("nvml_counter", 1500.0)]
    result.repeats[0].resources.gpu["phases"]["timed"]["samples"] = 1
    assert ga.check_run(result, EXPECT).failures == (
        "repeat 1: 1 monitor sample(s) in the timed phase",
    )


def test_contention_and_throttling_are_notes_not_failures() -> None:
    result = gpu_result()
    record = repeat("nvml_counter", 1500.0, contended=[{"gpu": 0, "pid": 42, "name": "python"}])
    record.resources.timed.throttled = True
    result.repeats = [record]
    verdict = ga.check_run(result, EXPECT)
    assert verdict.ok
    assert verdict.notes == (
        "repeat 1: GPU clocks throttled (power/thermal)",
        "GPU 0 also used by pid 42 (python)",
    )


def test_memory_is_compared_across_frameworks() -> None:
    results = []
    for tool, mib, peak in (("pytorch", 5000.0, 3000), ("tensorflow", 7000.0, 4500),
                            ("mxnet", 6000.0, None)):  # fmt: skip
        result = make_result(tool, "resnet50", "cifar10", num_gpus=1, memory=(mib, 1.0))
        if peak is not None:
            result.summary.framework_memory_mib = figure(float(peak))
        results.append(result)
    results.append(make_result("jax", "resnet50", "cifar10", num_gpus=1, status="oom"))
    results.append(make_result("pytorch", "lenet", "mnist", num_gpus=1, memory=(900.0, 1.0)))
    header, rows = ga.memory_table(results)
    assert header == ["model/dataset", "GPUs", "precision", "batch", "pytorch", "tensorflow",
                      "mxnet"]  # fmt: skip
    assert rows == [
        ["resnet50/cifar10", "1 GPU", "fp32", "32", "5,000 (3,000)", "7,000 (4,500)", "6,000"],
        ["lenet/mnist", "1 GPU", "fp32", "32", "900", "-", "-"],
    ]
    text = ga.format_rows(header, rows)
    assert text.splitlines()[1].startswith("resnet50/cifar10  1 GPU  fp32")


def test_the_verdict_needs_a_passing_run_and_no_failure() -> None:
    out = ga.Outcome
    good = [
        out("run/a", "a", ga.PASS),
        out("run/b", "b", ga.REFUSED),
        out("verify", "v", ga.SKIPPED),
    ]
    assert ga.passed(good)
    assert not ga.passed([*good, out("doctor", "d", ga.FAIL)])
    assert not ga.passed([out("doctor", "d", ga.PASS), out("run/b", "b", ga.REFUSED)])
    assert ga.summary_line(good, 75).startswith("ACCEPTED: 1 pass, 1 refused, 1 skipped, 0 FAIL")


# -- end to end on the fake GPU machine ---------------------------------------------------------

FAKE_RUN = (
    "--skip-install", "--tools", "fake", "--models", "lenet", "--warmup-steps", "2",
    "--min-time", "0.5", "--max-time", "1", "--idle-baseline", "0.3", "--repeats", "1",
)  # fmt: skip


def table_rows(stdout: str) -> dict[str, str]:
    """step title -> its line of the final table."""
    lines = stdout.split("\nGPU acceptance\n", 1)[1].splitlines()
    return {re.split(r"\s{2,}", ln)[1]: ln for ln in lines[1:] if ln[:1].isdigit()}


@pytest.mark.slow
def test_the_acceptance_runs_against_the_fake_gpu_machine(tmp_path: Path) -> None:
    out = run_script(*FAKE_RUN, "--output-dir", str(tmp_path),
                     HARNESS_NVML_MODULE="fake_gpu_machine")  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = table_rows(out.stdout)
    assert list(rows) == [
        "preflight: Python, GPUs",
        "harness doctor",
        "train fake lenet/mnist 1 GPU fp32",
        "train fake lenet/mnist 1 GPU fp16",
        "train fake lenet/mnist 1 GPU bf16",
        "train fake lenet/mnist 2 GPUs fp32",
        "train fake lenet/mnist 2 GPUs fp16",
        "train fake lenet/mnist 2 GPUs bf16",
        "GPU memory across frameworks",
        "harness verify --gpu",
        "harness report reads the store",
    ]
    assert "3 GPU(s): 0 NVIDIA A100-SXM4-40GB" in rows["preflight: Python, GPUs"]
    assert (
        "refused: fake supports precision fp32, bf16, not fp16"
        in rows["train fake lenet/mnist 1 GPU fp16"]
    )
    assert " 200 W, " in rows["train fake lenet/mnist 1 GPU fp32"]  # GPU 0 alone
    assert " 270 W, " in rows["train fake lenet/mnist 2 GPUs bf16"]  # the A100 and the T4
    # the harness has --task inference; the fake tool trains only, so no inference step
    assert " skipped " in rows["harness verify --gpu"]
    assert "ACCEPTED: 8 pass, 2 refused, 1 skipped, 0 FAIL" in out.stdout
    assert "model/dataset  GPUs    precision  batch  fake" in out.stdout  # the memory table
    assert "lenet/mnist    2 GPUs  fp32       128    5,096" in out.stdout
    assert f"-m harness report --store {tmp_path}/results.sqlite" in out.stdout

    runs = ResultStore(tmp_path / "results.sqlite", readonly=True).runs()
    assert sorted((r.spec.num_gpus, r.spec.precision) for r in runs) == [
        (1, "bf16"), (1, "fp32"), (2, "bf16"), (2, "fp32"),
    ]  # fmt: skip
    for result in runs:
        assert result.spec.tags == {"acceptance": tmp_path.name}
        assert ga.check_run(result, ga.RunExpectation(
            "fake", "lenet", "mnist", tuple(range(result.spec.num_gpus)), result.spec.precision
        )).ok  # fmt: skip
    record = json.loads((tmp_path / "acceptance.json").read_text())
    assert record["accepted"] is True and len(record["outcomes"]) == 11
    assert (tmp_path / "report.md").is_file()


@pytest.mark.slow
def test_a_bare_interpreter_hands_over_to_one_with_the_harness(tmp_path: Path) -> None:
    """--harness-python: the set-up part runs here and the rest in that interpreter, as
    after an install; the GPUs of the preflight come from nvidia-smi (a fake one)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA A100-SXM4-40GB, 40960, 8.0'\n")
    smi.chmod(0o755)
    out = run_script(
        *FAKE_RUN, "--precisions", "fp32", "--max-gpus", "1", "--harness-python",
        sys.executable, "--output-dir", str(tmp_path / "out"),
        HARNESS_NVML_MODULE="fake_gpu_machine", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"continuing in {sys.executable}" in out.stdout
    rows = table_rows(out.stdout)
    assert (
        "1 GPU(s): 0 NVIDIA A100-SXM4-40GB (cc 8.0, 40960 MiB)" in rows["preflight: Python, GPUs"]
    )  # the first part's preflight, through nvidia-smi
    assert " pass " in rows["train fake lenet/mnist 1 GPU fp32"]
    assert len(ResultStore(tmp_path / "out" / "results.sqlite", readonly=True).runs()) == 1
