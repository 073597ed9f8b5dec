"""Which install extras (pyproject.toml) a command line needs: its judge kind's and its
benchmark's. bin/rmb-judge runs this file before anything is installed, so it uses the
standard library only and imports nothing of rmb_judge: it reads the class attributes that
declare them off the modules' source (`name` or `prefix`, and `extra`, both string literals)
in providers/ and judges.py (the judge kinds) and benchmarks/ (the benchmarks).

    python3 rmb_judge/extras.py run --judge hf:org/model --benchmark judgebench ...

prints the extras needed, space-separated and sorted (an empty line: the core alone), then the
`hf:` model on a second line when there is one (bin/rmb-judge checks that it can be had
before installing torch). tests/test_install.py checks that what it reads is what the
judge kind and benchmark registries say when imported.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
DEFAULT_BENCHMARK = "rmb"


def declared(*files: Path) -> dict[str, str | None]:
    """Each class's `name` or `prefix` -> its `extra`, for the classes of `files` that name one
    with a string literal (an `extra` not given here is None)."""
    found: dict[str, str | None] = {}
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            facts: dict[str, object] = {}
            for statement in node.body:
                if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                    target, value = statement.targets[0], statement.value
                elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                    target, value = statement.target, statement.value
                else:
                    continue
                if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
                    facts[target.id] = value.value
            key = facts.get("prefix", facts.get("name"))
            if isinstance(key, str):
                extra = facts.get("extra")
                found[key] = extra if isinstance(extra, str) else None
    return found


def judge_extras() -> dict[str, str | None]:
    """Each judge kind's prefix -> its extra: one per provider module, and judges.py's kinds."""
    providers = [p for p in sorted((PACKAGE / "providers").glob("*.py")) if p.stem not in ("__init__", "base")]
    return declared(*providers, PACKAGE / "judges.py")


def benchmark_extras() -> dict[str, str | None]:
    """Each benchmark's name -> its extra."""
    return declared(*(p for p in sorted((PACKAGE / "benchmarks").glob("*.py")) if p.stem != "__init__"))


def flag(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` (the last one given), before any `--`."""
    value = None
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == name and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(name + "="):
            value = arg.partition("=")[2]
    return value


def needed(argv: list[str]) -> tuple[list[str], str | None]:
    """The extras a command line needs, and its `hf:` model (None if its judge is none)."""
    judge = flag(argv, "--judge") or ""
    prefix = "mock" if judge == "mock" else judge.partition(":")[0]
    extras = {judge_extras().get(prefix), benchmark_extras().get(flag(argv, "--benchmark") or DEFAULT_BENCHMARK)}
    model = judge.partition(":")[2] if prefix == "hf" else None
    return sorted(e for e in extras if e), model


if __name__ == "__main__":
    extras, model = needed(sys.argv[1:])
    print(" ".join(extras))
    print(model or "")
