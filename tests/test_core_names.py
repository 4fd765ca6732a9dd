"""The core names no framework: what is a backend's is declared by its plugin (hooks,
BackendInfo), so that a backend from an outside package can do all a built-in one does.

The registry of the built-in plugins is the ``harness`` entry-point group of setup.cfg
(installed from backends/ as harness.backends): their tool names, and the import names
their BackendInfo requires, may appear nowhere in harness/ (code, comments, help texts),
and the core imports no framework. ``onnx`` is a model file format the core names
(``--onnx-file``, the ``onnx`` command); its package is imported by a backend only.
"""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "harness"
# Names of the built-in backends' frameworks that are not tool or import names.
ALIASES = {"tf", "mx", "keras", "torchrun", "ort"}
FORMATS = {"onnx"}  # model file formats the core may name


def _registry() -> tuple[set[str], set[str]]:
    """(built-in tool names, the import names they require), from the registry."""
    from harness.plugins import PluginManager

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options.entry_points"]["harness"].strip().splitlines()
    tools = {line.split("=")[0].strip() for line in lines}
    pm = PluginManager()
    modules = {m for tool in tools for m in pm.backend(tool).requires}
    return tools, modules


def _core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 50 and not (CORE / "backends").exists()  # backends/ is top level
    return files


def test_the_registry_lists_the_builtin_backends() -> None:
    tools, modules = _registry()
    assert {"pytorch", "onnxruntime"} <= tools and {"torch", "onnx"} <= modules


def test_no_framework_is_named_in_the_core() -> None:
    tools, modules = _registry()
    names = sorted((tools | modules | ALIASES) - FORMATS)
    pattern = re.compile(rf"\b({'|'.join(names)})\b", re.IGNORECASE)
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in _core_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "framework names in the core:\n" + "\n".join(found)


def test_the_core_imports_no_framework() -> None:
    tools, modules = _registry()
    banned = tools | modules | {"harness.backends"}
    found = []
    for path in _core_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported = [node.module or ""]
            else:
                continue
            for name in imported:
                if name.split(".")[0] in banned or name.startswith("harness.backends"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert not found, "framework imports in the core:\n" + "\n".join(found)


def test_the_scan_finds_a_name(tmp_path: Path) -> None:
    """The patterns match what they must: the scan would catch a leak."""
    tools, modules = _registry()
    names = sorted((tools | modules | ALIASES) - FORMATS)
    pattern = re.compile(rf"\b({'|'.join(names)})\b", re.IGNORECASE)
    assert pattern.search("import torch") and pattern.search('if tool == "PyTorch":')
    assert pattern.search("(MXNet's engine)") and pattern.search("tf.float64")
    assert not pattern.search("tf32 on, --onnx-file FILE, torch_like")
