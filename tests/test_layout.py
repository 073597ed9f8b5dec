"""The package's shape: no import cycles, including imports inside functions and type-only
ones, and no SDK or heavy library imported where a command does not need it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rmb_judge"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every rmb_judge module `name` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            stem = f"{base}.{node.module}" if node.level and node.module else (node.module if not node.level else base)
            targets = [stem, *(f"{stem}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    found = modules()
    # a package imports its submodules' names through its __init__ only when it says so
    graph = {name: imports_of(name, path, set(found)) for name, path in found.items()}
    for name in graph:  # importing a.b runs a/__init__ first: that is not a cycle of a.b's making
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_imports_no_sdk_and_no_torch():
    loaded = loaded_after("from rmb_judge import cli; cli.build_parser().format_help()")
    heavy = {"openai", "anthropic", "torch", "transformers", "google.genai", "rich", "aiohttp", "genai_prices"}
    assert not heavy & loaded


def test_top_level_help_imports_no_judge_kind_and_no_benchmark():
    """`rmb-judge --help` names the commands: run's and estimate's flags need every judge kind
    and benchmark imported (about twice its start-up), so only the command given builds them."""
    said = subprocess.run([sys.executable, "-X", "importtime", "-m", "rmb_judge.cli", "--help"],
                          capture_output=True, text=True, check=True)
    loaded = {line.split("|")[-1].strip() for line in said.stderr.splitlines() if line.startswith("import time:")}
    assert "usage: rmb-judge" in said.stdout and "estimate" in said.stdout and "rmb_judge.records" in loaded
    assert not {"rmb_judge.judges", "rmb_judge.providers", "rmb_judge.benchmarks.rmb", "asyncio"} & loaded


def test_an_offline_mock_run_imports_no_sdk(data_root, tmp_path):
    run = (
        "from rmb_judge import cli; cli.main(['run', '--judge', 'mock', '--data', "
        f"{str(data_root)!r}, '--limit', '1', '--scenarios', '*Code*', '--out', {str(tmp_path / 'o')!r}, "
        f"'--cache', {str(tmp_path / 'c')!r}, '--no-progress'])"
    )
    loaded = loaded_after(run)
    assert not {"openai", "anthropic", "torch", "transformers"} & loaded
