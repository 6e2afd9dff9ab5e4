"""The layout's rules, checked over the source: who may import whom, and what the wheel installs.

Layers from the ground up (see docs/architecture.md):
- shared: ``tenant_metrics`` except its top layer (core, fakes, dashboards, rules);
- parts: ``broker``, ``sd``, ``gateway``, each importing shared code only;
- top: ``tenant_metrics.cli``, ``tenant_metrics.__main__``, ``tenant_metrics.demo``,
  ``tenant_metrics.world``: may use every part.
``migrations`` imports shared code only; ``bench`` never imports ``tests``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = {"broker", "sd", "gateway"}
TOP = ("tenant_metrics.cli", "tenant_metrics.__main__", "tenant_metrics.demo", "tenant_metrics.world")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, wherever the import statement sits."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(*tops: str) -> list[Path]:
    files = [p for top in tops for p in sorted((ROOT / top).rglob("*.py"))]
    assert files, f"no sources under {tops}"
    return files


def top_package(module: str) -> str:
    return module.split(".", 1)[0]


def is_top_layer(module: str) -> bool:
    return any(module == top or module.startswith(top + ".") for top in TOP)


def test_shared_code_imports_no_part() -> None:
    offenders = [
        f"{module_name(path)} imports {imported}"
        for path in sources("tenant_metrics")
        if not is_top_layer(module_name(path))
        for imported in imported_modules(path)
        if top_package(imported) in PARTS or is_top_layer(imported)
    ]
    assert offenders == []


def test_no_part_imports_another_part_or_the_top_layer() -> None:
    offenders = [
        f"{module_name(path)} imports {imported}"
        for part in sorted(PARTS)
        for path in sources(part)
        for imported in imported_modules(path)
        if (top_package(imported) in PARTS - {part}) or is_top_layer(imported)
    ]
    assert offenders == []


def test_migrations_import_only_shared_code() -> None:
    offenders = [
        f"{module_name(path)} imports {imported}"
        for path in sources("migrations")
        for imported in imported_modules(path)
        if top_package(imported) in PARTS or is_top_layer(imported)
    ]
    assert offenders == []


def test_bench_never_imports_tests() -> None:
    offenders = [
        f"{module_name(path)} imports {imported}"
        for path in sources("bench")
        for imported in imported_modules(path)
        if top_package(imported) == "tests"
    ]
    assert offenders == []


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself: an import of a part inside a function body is still found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from gateway.enforce import enforce\n    import sd.targets\n")
    assert {"gateway.enforce", "gateway.enforce.enforce", "sd.targets"} <= imported_modules(probe)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the tree, so the build leaves nothing (build/, *.egg-info) behind."""
    out = tmp_path_factory.mktemp("wheel")
    tree = out / "src"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "demo-data", "__pycache__", "*.sqlite3*"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(tree)],
        check=True, capture_output=True, timeout=300,
    )
    (built,) = out.glob("tenant_metrics-*.whl")
    return built


def test_wheel_installs_only_the_project_names(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top_level = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"tenant_metrics", "broker", "sd", "gateway", "migrations"}
    # what the running code reads from disk travels in the wheel
    for needed in ("migrations/script.py.mako", "tenant_metrics/dashboards/aiven-opensearch.json",
                   "gateway/ui/static/index.html", "tenant_metrics/rules/aiven-search-alerts.yml"):
        assert needed in names, needed
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
