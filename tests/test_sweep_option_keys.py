"""A backend option a sweep's tool does not know, from the file or from ``--set
options={...}``, stops the sweep before any run: exit 2, one line naming the cell and
the key, with "did you mean" where close (issue 28, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main

SWEEP = """
[sweep]
name = "keys"
tools = ["pytorch", "mxnet"]
hardware = ["cpu"]
[defaults]
steps = 2
{defaults}
[[workloads]]
dataset = "mnist"
model = "lenet"
"""

# (options in [defaults], --set value, expected exit, expected words)
CASES = [
    ("", "options={complie=true}", 2, "pytorch has no option 'complie' (did you mean 'compile'?)"),
    ("", 'options={compile="maybe"}', 2, "-o compile=maybe: expected true or false"),
    ("", "options={zzz=1}", 2, "pytorch/lenet/mnist/CPU: pytorch has no option 'zzz';"),
    ("options = {complie = true}", "steps=3", 2, "(did you mean 'compile'?)"),
    ("", "steps=3", 0, "2 runs"),
]


@pytest.mark.parametrize("defaults, overrides, code, words", CASES)
def test_sweep_option_keys_are_checked_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], defaults: str, overrides: str,
    code: int, words: str,
) -> None:  # fmt: skip
    sweep = tmp_path / "keys.toml"
    sweep.write_text(SWEEP.format(defaults=defaults))
    line = ["sweep", str(sweep), "--set", overrides, "--output-dir", str(tmp_path / "logs")]
    for extra in (["--dry-run"], []):  # a dry run says so too; a real one runs nothing
        if code == 0 and not extra:
            continue
        assert main([*line, *extra]) == code
        out = capsys.readouterr()
        assert words in " ".join((out.err + out.out).split())
        assert not (tmp_path / "logs").exists()
