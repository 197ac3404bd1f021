"""The package's layout is its map: folders in the study's order, imports only with the flow, no cycles."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reproduce"
SHELL = {"__init__", "__main__", "cli", "errors", "files", "logs"}
# The study's flow: a folder may import the shell and the folders before it, never one after it.
# cost/, weights/ and launch/ stand beside the flow: they use every stage before them, not each other.
ORDER = {"models": 1, "config": 2, "data": 3, "training": 4, "results": 5, "report": 6, "cost": 7, "weights": 7,
         "launch": 7}


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def name_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module of the package `path` imports, anywhere in it (lazy imports in functions too)."""
    here = name_of(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("reproduce")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            if base.startswith("reproduce"):
                found |= {f"{base}.{a.name}" for a in node.names} | {base}
    known = {name_of(p) for p in modules()}
    return {n for n in found if n in known} - {name_of(path)}


def folder(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


def test_the_top_level_holds_only_the_shell_and_the_folders():
    assert {p.stem for p in PACKAGE.glob("*.py")} <= SHELL
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ORDER)


@pytest.mark.parametrize("name", sorted(ORDER))
def test_every_folder_says_what_it_holds(name):
    doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
    assert doc and len(doc.splitlines()[0]) > 20


def test_no_module_is_over_300_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > 300}
    assert not long


def test_imports_follow_the_flow():
    against = []
    for path in modules():
        mine = folder(name_of(path))
        if mine is None:  # the shell: cli may import anything (lazily); the rest imports no folder
            if path.stem not in ("cli", "__main__"):
                against += [f"{name_of(path)} -> {m}" for m in imported(path) if folder(m)]
            continue
        for m in imported(path):
            theirs = folder(m)
            if theirs and theirs != mine and ORDER[theirs] >= ORDER[mine]:
                against.append(f"{name_of(path)} -> {m}")
    assert not against


def test_no_import_cycles():
    graph = {name_of(p): imported(p) for p in modules()}
    graph = {m: {d for d in deps if d != m.rsplit(".", 1)[0]} for m, deps in graph.items()}  # a module's own package
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError(" -> ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        path.append(m)
        for d in graph.get(m, ()):
            visit(d)
        path.pop()
        done.add(m)

    for m in graph:
        visit(m)
