"""The module map (docs/architecture.md) holds: no import circle among rcc's modules, and no module imports from
a layer above its own. Imports are read from the source (ast), lazy ones inside functions included; imports
under `if TYPE_CHECKING:` are not imports at run time and do not count."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
DOC = REPO / "docs" / "architecture.md"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted((SRC / "rcc").rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """rcc modules `name` imports (a `from pkg import mod` names the module; `from mod import x` names mod)."""

    def owner(dotted: str) -> str:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted

    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(owner(a.name) for a in node.names if a.name.split(".")[0] == "rcc")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "rcc":
                for a in node.names:
                    full = f"{mod}.{a.name}"
                    found.add(full if full in modules else owner(mod))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    found.discard("")
    return found


def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def layers_from_doc(text: str) -> tuple[dict[str, int], dict[str, int]]:
    """(module -> layer, package prefix -> layer) from the ```layers block."""
    m = re.search(r"```layers\n(.*?)```", text, re.S)
    assert m, "docs/architecture.md has no ```layers block"
    exact: dict[str, int] = {}
    prefix: dict[str, int] = {}
    for line in m.group(1).splitlines():
        if not line.strip():
            continue
        layer, *names = line.split()
        for n in names:
            target = prefix if n.endswith(".*") else exact
            key = n[:-2] if n.endswith(".*") else n
            assert key not in target, f"{n} is placed twice"
            target[key] = int(layer)
    return exact, prefix


def layer_of(module: str, exact: dict[str, int], prefix: dict[str, int]) -> int | None:
    if module in exact:
        return exact[module]
    pkg = module
    while "." in pkg:
        pkg = pkg.rpartition(".")[0]
        if pkg in prefix:
            return prefix[pkg]
    return None


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycle_among_rccs_modules() -> None:
    found = cycles(graph())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_every_module_is_placed_in_the_docs_map() -> None:
    exact, prefix = layers_from_doc(DOC.read_text())
    unplaced = [m for m in _modules() if layer_of(m, exact, prefix) is None]
    assert unplaced == [], f"add these to the ```layers table in docs/architecture.md: {unplaced}"
    stale = [m for m in exact if m not in _modules()]
    assert stale == [], f"docs/architecture.md places modules that do not exist: {stale}"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    exact, prefix = layers_from_doc(DOC.read_text())
    bad = []
    for m, deps in graph().items():
        mine = layer_of(m, exact, prefix)
        for d in sorted(deps):
            theirs = layer_of(d, exact, prefix)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{m} (layer {mine}) imports {d} (layer {theirs})")
    assert bad == [], "\n".join(bad)


# ------------------------------------------------------------------------------- the checker itself (controls)


def test_the_checker_sees_a_cycle_through_a_lazy_import_and_ignores_type_checking(tmp_path: Path) -> None:
    modules = {"rcc.a": tmp_path / "a.py", "rcc.b": tmp_path / "b.py", "rcc.c": tmp_path / "c.py"}
    modules["rcc.a"].write_text("from rcc import b\n")
    modules["rcc.b"].write_text("def f():\n    from rcc.a import x\n")
    modules["rcc.c"].write_text("TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from rcc import a\n")
    g = {m: imports_of(m, p, modules) for m, p in modules.items()}
    assert g == {"rcc.a": {"rcc.b"}, "rcc.b": {"rcc.a"}, "rcc.c": set()}
    assert cycles(g) == [["rcc.a", "rcc.b"]]
    assert cycles({"rcc.a": {"rcc.b"}, "rcc.b": set()}) == []  # control: a one-way import is no circle


def test_the_checker_places_modules_by_name_and_by_package() -> None:
    exact, prefix = layers_from_doc("```layers\n1 rcc.x\n4 rcc.pkg.*\n2 rcc.pkg.pure\n```\n")
    assert layer_of("rcc.x", exact, prefix) == 1
    assert layer_of("rcc.pkg.pure", exact, prefix) == 2
    assert layer_of("rcc.pkg.other", exact, prefix) == 4
    assert layer_of("rcc.y", exact, prefix) is None
