"""The tooling of STYLE.md rule 15 keeps the code as it is: ruff (lint and format) and snakefmt."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint_and_format_are_clean():
    lint = run(sys.executable, "-m", "ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout
    formatted = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout


def test_snakefmt_is_clean():
    rules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    result = run(sys.executable, "-m", "snakefmt", "--check", "Snakefile", *rules)
    assert result.returncode == 0, result.stderr


def test_no_function_over_60_lines_and_no_class_over_120():
    import ast

    long = []
    for path in sorted(
        [*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("models/*.py"), *ROOT.glob("benchmarks/*.py")]
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            limit = 120 if isinstance(node, ast.ClassDef) else 60
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and lines > limit:
                long.append(f"{path.relative_to(ROOT)}: {node.name} ({lines} lines)")
    assert not long, long


def test_models_know_nothing_of_the_workflow():
    """models/ holds torch modules only: the workflow (pipeline/) depends on it, never the other way."""
    mentions = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in ROOT.glob("models/*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "pipeline" in line
    ]
    assert not mentions, mentions
