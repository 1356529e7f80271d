"""The package layers of docs/architecture.md, enforced: a lower package never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# unit -> the units it may import (besides itself and third-party packages); the longest prefix names a unit
ALLOWED: dict[str, set[str]] = {
    "pipeline": set(),
    "sinks": {"pipeline"},
    "monitor.config": {"pipeline", "sinks"},
    "monitor.env": set(),
    "monitor.logs": {"pipeline"},
    "monitor.options": {"monitor.config", "monitor.env", "pipeline", "sinks"},
    "monitor.models": {"monitor.config", "monitor.env", "pipeline", "sinks"},
    "monitor.console": {"monitor.config", "monitor.env", "monitor.logs", "monitor.options", "pipeline", "sinks"},
    "monitor.live": {
        "monitor.config",
        "monitor.console",
        "monitor.env",
        "monitor.logs",
        "monitor.models",
        "monitor.options",
        "pipeline",
        "sinks",
    },
    "monitor.offline": {
        "monitor.config",
        "monitor.env",
        "monitor.live",
        "monitor.logs",
        "monitor.models",
        "monitor.options",
        "pipeline",
        "sinks",
    },
    "monitor.cli": {"monitor", "pipeline", "sinks"},
    "monitor": {"monitor", "pipeline", "sinks"},  # monitor/__init__.py and __main__.py
}
OURS = ("pipeline", "sinks", "monitor")


def unit_of(module: str) -> str | None:
    best = None
    for unit in ALLOWED:
        if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > len(best)):
            best = unit
    return best


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m.split(".")[0] in OURS]


def test_no_package_imports_a_higher_one() -> None:
    problems = []
    files = [p for pkg in OURS for p in (ROOT / pkg).rglob("*.py")]
    assert len(files) > 40
    for path in files:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        unit = unit_of(module)
        assert unit is not None, f"{module} belongs to no layer: add it to ALLOWED and docs/architecture.md"
        for line, imported in imports(path):
            target = unit_of(imported)
            if target != unit and not any(target == a or (target or "").startswith(a + ".") for a in ALLOWED[unit]):
                problems.append(f"{path.relative_to(ROOT)}:{line}: {unit} imports {imported}")
    assert not problems, "\n".join(problems)


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from monitor.config import AppConfig\nimport sinks.base\n")
    found = [m for _, m in imports(bad)]
    assert found == ["monitor.config", "sinks.base"]
    assert unit_of("monitor.config.loader") == "monitor.config" and "monitor.config" not in ALLOWED["pipeline"]
