"""Figures about the code of a Lifeboat tree: import cycles and layer breaks, ``Any`` parameters, ``type: ignore``
comments, the largest modules. For before/after notes (issue 13): run it on two checkouts and compare.

    .venv/bin/python scripts/code-figures.py [TREE]        (TREE: a checkout, default: this one)

The layer contracts are always this checkout's .importlinter, so an old tree is measured by today's rules.
Counted in storage/, portal/ and jobs/ (the code, not tests/ or migrations/).
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
PACKAGES = ("storage", "portal", "jobs")


def modules(tree: Path) -> list[Path]:
    return sorted(p for package in PACKAGES for p in (tree / package).rglob("*.py"))


def any_parameters(source: str) -> tuple[int, int]:
    """(parameters annotated ``Any`` itself, parameters whose annotation mentions ``Any`` anywhere)."""
    exact = mentions = 0
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is None or arg.annotation is None:
                continue
            names = [n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(arg.annotation)
                     if isinstance(n, ast.Name | ast.Attribute)]
            text = ast.unparse(arg.annotation).strip("'\"")
            if "Any" in names or re.search(r"\bAny\b", text):
                mentions += 1
                exact += text in ("Any", "typing.Any")
    return exact, mentions


def type_ignores(source: str) -> int:
    return sum(1 for token in tokenize.generate_tokens(io.StringIO(source).readline)
               if token.type == tokenize.COMMENT and re.search(r"type:\s*ignore", token.string))


def import_contracts(tree: Path) -> str:
    """lint-imports' verdict on ``tree`` under this checkout's contracts (the broken ones, with their chains)."""
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([str(lint), "--no-cache", "--config", str(HERE / ".importlinter")], cwd=tree, env=env,
                          capture_output=True, text=True)
    lines = done.stdout.splitlines()
    lines = lines[lines.index("Contracts") + 1:] if "Contracts" in lines else lines  # past the banner
    keep = [line for line in lines if line.strip() and set(line.strip()) - set("=-")]
    cycles = sum(line.startswith("No cycles are allowed in") for line in keep)
    breaks = sum(" is not allowed to import " in line for line in keep)
    return "\n".join([f"  cycles: {cycles}, layer breaks: {breaks}", *("  " + line for line in keep)])


def main() -> None:
    tree = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE
    files = modules(tree)
    sizes, exact, mentions, ignores = [], 0, 0, 0
    for path in files:
        source = path.read_text()
        sizes.append((source.count("\n"), path.relative_to(tree)))
        e, m = any_parameters(source)
        exact, mentions, ignores = exact + e, mentions + m, ignores + type_ignores(source)
    print(f"# {tree}  ({len(files)} modules in {', '.join(PACKAGES)}, {sum(s for s, _ in sizes)} lines)")
    print(f"Any parameters: {exact} annotated Any, {mentions} whose annotation mentions Any")
    print(f"type: ignore comments: {ignores}")
    print("largest modules (lines):")
    for lines, path in sorted(sizes, reverse=True)[:10]:
        print(f"  {lines:5d}  {path}")
    print("import contracts (this checkout's .importlinter):")
    print(import_contracts(tree))


if __name__ == "__main__":
    main()
