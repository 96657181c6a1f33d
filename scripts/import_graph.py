"""The import graph of `core`, and the edges that break its layering (DESIGN.md: core modules
depend downward only).

    .venv/bin/python scripts/import_graph.py            # every module's core imports, then the violations
    .venv/bin/python scripts/import_graph.py --check    # only the violations; exit 1 if there is one

Layers, top down: the entry points (`cli`, `__main__`); orchestration (`farm`: jobs that run the
stages); the stages (`extract`, `train`, `swap`, `encode`, `evaluate`), none of which imports
another; everything else, the libraries (`masks`, `color_match`, `compositing`,
`color_management`, `faceset`, `media`, the packages `faces/` and `provenance/`, ...), which
import no stage. A package takes its layer for all its modules: the modules of one stage package
(`evaluate/`: `pairing`, `controls`, `measures`, `clip`, `model_quality`) import each other
freely, and none of them imports another stage. Inside the libraries `faces/` is the bottom: it
imports nothing of core but itself and the small utilities in `FACES_MAY_USE` (no faceset, no
media). Imports inside functions count: a lazy import is still a dependency.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"
ENTRY = {"core.cli", "core.__main__"}
ORCHESTRATION = {"core.farm"}
STAGES = {"core.extract", "core.train", "core.swap", "core.encode", "core.evaluate"}
FACES_MAY_USE = {"core", "core.errors", "core.atomic", "core.device", "core.network"}


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The core modules `path` imports (`from core.x import y` names core.x, or core.x.y when y
    is a module of ours)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                (node.module == "core" or node.module.startswith("core.")):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _is_module(sub) else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name == "core" or a.name.startswith("core."))
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (CORE / rel).with_suffix(".py").is_file() or (CORE / rel / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) - {module_name(p)} for p in sorted(CORE.rglob("*.py"))}


def layer(module: str) -> int:
    """3 entry, 2 orchestration, 1 stage, 0 library (a submodule takes its package's layer)."""
    for names, rank in ((ENTRY, 3), (ORCHESTRATION, 2), (STAGES, 1)):
        if any(module == n or module.startswith(n + ".") for n in names):
            return rank
    return 0


def violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in edges.items():
        for target in sorted(targets):
            s, t = layer(source), layer(target)
            if t > s:
                bad.append(f"{source} -> {target}: upward")
            elif s == t == 1 and source.split(".")[1] != target.split(".")[1]:
                bad.append(f"{source} -> {target}: sideways between stages")
            elif _in_faces(source) and not _in_faces(target) and target not in FACES_MAY_USE:
                bad.append(f"{source} -> {target}: faces/ is the bottom layer")
    return bad


def _in_faces(module: str) -> bool:
    return module == "core.faces" or module.startswith("core.faces.")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="print only the violations")
    args = p.parse_args()
    edges = graph()
    if not args.check:
        names = {3: "entry", 2: "orchestration", 1: "stage", 0: "library"}
        for module, targets in edges.items():
            print(f"{module} [{names[layer(module)]}] -> {', '.join(sorted(targets)) or '-'}")
    bad = violations(edges)
    for line in bad:
        print(f"violation: {line}")
    if not bad:
        print("no upward or sideways edge")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
