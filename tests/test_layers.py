"""Layering you can see (DESIGN.md 1): lower layers never import higher ones,
and no module imports itself back through others.

The layers are the `[tool.importlinter]` contract in pyproject.toml.
import-linter reads only .py files, so this test also parses the Cython
sources (.pyx, .pxd) and checks them against the same list; when
import-linter is installed, its own check runs too.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTS = ("mos", "middleboxes")
# compiled modules import-linter cannot see: the native layer, under all
# others (_cnative.pxd declares the C API that _native wraps: one unit)
NATIVE_LAYER = ["mos._native", "mos._cnative"]
# mos.errors is shared by every layer
SHARED = ("mos.errors",)
# Imports that break the layering, each with the work that removes it (none
# today: keep it that way).
KNOWN: set = set()

CY_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import\b|c?import\s+([\w.]+(?:\s*,\s*[\w.]+)*))")


def load_layers() -> list[list[str]]:
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        conf = tomllib.load(f)
    contract = next(c for c in conf["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    layers = [[m.strip() for m in row.split("|")] for row in contract["layers"]]
    return layers + [NATIVE_LAYER]


def module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)
    mod = rel.rsplit(".", 1)[0].replace(os.sep, ".")
    return mod.removesuffix(".__init__")


def imports_of(path: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in a .py, .pyx or .pxd file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = []
    if path.endswith(".py"):
        me = module_name(path)
        package = me if path.endswith("__init__.py") else me.rpartition(".")[0]
        for node in ast.walk(ast.parse(text, path)):
            if isinstance(node, ast.Import):
                out += [(a.name, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                out.append((base, node.lineno))
                # `from pkg import sub` may name a submodule
                out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
        return out
    for lineno, line in enumerate(text.splitlines(), 1):
        m = CY_IMPORT.match(line)
        if m:
            names = m.group(1) or m.group(2)
            out += [(n.strip(), lineno) for n in names.split(",")]
    return out


def source_files():
    for root in ROOTS:
        for dirpath, _dirs, files in os.walk(os.path.join(REPO, root)):
            for f in files:
                if f.endswith((".py", ".pyx", ".pxd")) and not f.endswith("_build.py"):
                    yield os.path.join(dirpath, f)


def known_modules() -> set[str]:
    return {module_name(p) for p in source_files()}


def layer_of(mod: str, layers) -> int | None:
    best, best_len = None, -1
    for i, row in enumerate(layers):
        for name in row:
            if (mod == name or mod.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    return best


def sibling_of(mod: str, layers) -> str | None:
    for row in layers:
        for name in row:
            if mod == name or mod.startswith(name + "."):
                return name
    return None


def violations(edges, layers, known=frozenset()) -> list[str]:
    """Edges (importer, imported, where) that go up the layers, or across
    two independent modules of one layer."""
    bad = []
    for src, dst, where in edges:
        if dst in SHARED or (src, dst) in known:
            continue
        ls, ld = layer_of(src, layers), layer_of(dst, layers)
        if ls is None or ld is None:
            continue
        if ld < ls:
            bad.append(f"{where}: {src} (layer {ls}) imports {dst} from higher layer {ld}")
        elif ld == ls and ls != len(layers) - 1 and sibling_of(src, layers) != sibling_of(dst, layers):
            bad.append(f"{where}: {src} imports its independent sibling {dst}")
    return bad


def project_edges():
    mods = known_modules()
    edges = []
    for path in source_files():
        src = module_name(path)
        for dst, line in imports_of(path):
            if dst.split(".")[0] in ROOTS and dst != src:
                # keep edges to real modules: `from mos.events import Event` is mos.events
                while dst not in mods and "." in dst:
                    dst = dst.rsplit(".", 1)[0]
                if dst != src:
                    edges.append((src, dst, f"{os.path.relpath(path, REPO)}:{line}"))
    return sorted(set(edges))


def cycles(edges) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan).  Package
    roots (`mos`, `middleboxes`) only re-export and are left out."""
    graph = defaultdict(set)
    for src, dst, _ in edges:
        if dst not in ROOTS and src not in ROOTS:
            graph[src].add(dst)
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_lower_layers_never_import_higher_ones():
    bad = violations(project_edges(), load_layers(), KNOWN)
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_known_exceptions_still_exist():
    """An exception listed in KNOWN that no longer happens must leave the list."""
    edges = {(s, d) for s, d, _ in project_edges()}
    stale = sorted(KNOWN - edges)
    assert not stale, f"remove from KNOWN, they are gone: {stale}"


def test_no_import_cycles():
    found = cycles(project_edges())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(g) for g in found)


def test_a_violation_is_reported():
    """The check fails on a lower layer importing a higher one (shown once)."""
    layers = load_layers()
    edges = [("mos.dualstack._engine", "mos.cli", "mos/dualstack/_engine.pyx:1"),
             ("mos.events.tree", "mos.engine", "mos/events/tree.py:1"),
             ("mos.engine", "mos.events", "mos/engine.py:1")]
    bad = violations(edges, layers)
    assert len(bad) == 2
    assert "mos.dualstack._engine" in bad[0] and "mos.cli" in bad[0]
    assert cycles([("mos.a", "mos.b", ""), ("mos.b", "mos.a", "")]) == [["mos.a", "mos.b"]]


def test_cython_imports_are_parsed(tmp_path):
    f = tmp_path / "x.pyx"
    f.write_text("from mos._cnative cimport *\ncimport mos.dualstack._cengine\n"
                 "    from mos.events import Event\nimport heapq, mos.errors\n")
    got = [m for m, _ in imports_of(str(f))]
    assert got == ["mos._cnative", "mos.dualstack._cengine", "mos.events", "heapq", "mos.errors"]


def test_import_linter_contract():
    exe = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable), "lint-imports")
    if not os.path.exists(exe):
        pytest.skip("import-linter is not installed")
    r = subprocess.run([exe], check=False, cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": REPO})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
