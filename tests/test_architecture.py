"""The import rules of docs/ARCHITECTURE, checked on the source (``ast``), imports inside functions included.

Floors (a module may import its own floor and the ones below, never one above)::

    core L0 | atomic, runtime, multidiff/__init__ (utilities) L1 | backbones L1 | train L2 | adapters L3
    | data L4 | metrics L5 | recipes L6 | cli, __main__ L7

Rules, each named in a failure together with the file and line that breaks it:

- ``layer``: no import from a lower floor to a higher one;
- ``utility``: the utilities import nothing from multidiff (core may not use them either: they sit on L1);
- ``adapter``: an adapter imports only L0-L2: never another adapter, never data/ or metrics/;
- ``cli``: the CLI names no domain module (adapters, data, metrics or a domain's recipe module), by import
  or by a dotted name in a string;
- ``cycle``: no import circle in multidiff. Checked on every package's children (the modules and
  sub-packages of ``multidiff``, ``multidiff.core``, ``multidiff.core.samplers``, ...): child A -> child B
  when anything in A imports anything in B. A package's own ``__init__`` is not a child of itself, so an
  ``__init__`` re-exporting its submodules, and a submodule importing a name from its package, are fine;
  a name imported from a package that re-exports it counts as imported from the module that defines it;
- ``missing``: an import names a multidiff module that does not exist (e.g. a relative import with one
  dot too few), which would fail only when that line runs;
- ``benchmark``: a benchmark script imports no other script, only the shared modules (``common``,
  ``docblock``), and the scripts hold no import circle.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "multidiff"

FLOORS = {"core": 0, "__init__": 1, "atomic": 1, "runtime": 1, "backbones": 1, "train": 2, "adapters": 3, "data": 4,
          "metrics": 5, "recipes": 6, "cli": 7, "__main__": 7}
UTILITIES = {"__init__", "atomic", "runtime"}  # small helpers usable from L1 up; they import nothing from multidiff
ADAPTER_MAY_IMPORT = {"core", "backbones", "train", "atomic", "runtime", "__init__"}
DOMAIN_AREAS = ("adapters", "data", "metrics")  # every module under these belongs to a domain (or serves them)
SHARED_RECIPE_MODULES = {"base", "registry", "common"}  # recipes/ modules that know no domain
CLI_MODULES = ("multidiff.cli", "multidiff.__main__")
BENCHMARK_SHARED = {"common", "docblock"}

# Back edges that exist today and are being removed by the engineers who own those files. Each entry is a
# violation's key (printed by the failing test); an entry that no longer matches anything fails the test too,
# so this list only shrinks. TEMPORARY: it is to be emptied, not extended.
TEMPORARY_ALLOWED_VIOLATIONS: set[str] = set()


# ---------------------------------------------------------------- reading the source


@dataclass(frozen=True)
class Source:
    path: str  # relative to the repository root, for messages
    text: str
    is_package: bool = False  # an __init__.py


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    path: str
    line: int
    target: str  # the multidiff module imported (after following re-exports)


@dataclass(frozen=True)
class Violation:
    rule: str
    key: str  # stable (no line numbers): what the allow-list holds
    message: str  # file:line, the rule and what it forbids

    def __str__(self):
        return self.message


def package_sources(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Source]:
    """``{dotted module name: Source}`` for every .py file under ``root / package``."""
    sources = {}
    for file in sorted((root / package).rglob("*.py")):
        parts = file.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        sources[name] = Source(file.relative_to(root).as_posix(), file.read_text(), is_package)
    return sources


def _trees(sources: dict[str, Source]) -> dict[str, ast.Module]:
    return {name: ast.parse(source.text, filename=source.path) for name, source in sources.items()}


def _base(module: str, source: Source, node: ast.ImportFrom) -> str:
    """The absolute module named by ``from <base> import ...``."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if source.is_package else module.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _known(name: str, sources: dict) -> str:
    """The longest prefix of dotted ``name`` that is a module of ours."""
    while name and name not in sources:
        name = name.rpartition(".")[0]
    return name


def _top_level(tree: ast.Module):
    """The statements that run when the module is imported (function and class bodies skipped)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            todo += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]


def _re_exports(sources: dict[str, Source], trees: dict[str, ast.Module]) -> dict[str, dict[str, str]]:
    """``{package: {name: module it comes from}}`` for the names each ``__init__`` imports at its top level."""
    exports = {}
    for name, source in sources.items():
        if not source.is_package:
            continue
        table = exports.setdefault(name, {})
        for node in _top_level(trees[name]):
            if isinstance(node, ast.ImportFrom):
                base = _base(name, source, node)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    table[alias.asname or alias.name] = full if full in sources else _known(base, sources)
    return exports


def _origin(package: str, name: str, exports: dict, seen=()) -> str:
    """Where ``from package import name`` really comes from, following re-exports."""
    target = exports.get(package, {}).get(name)
    if target is None or target == package or target in seen:
        return package
    if target in exports and name in exports[target]:
        return _origin(target, name, exports, seen + (package,))
    return target


def imports(sources: dict[str, Source]) -> list[Import]:
    """Every import of a multidiff module by a multidiff module, wherever it stands (functions included)."""
    trees = _trees(sources)
    exports = _re_exports(sources, trees)
    found = []
    for module, tree in trees.items():
        source = sources[module]
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [_known(alias.name, sources) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _base(module, source, node)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in sources else _origin(_known(base, sources), alias.name, exports))
            found += [Import(module, source.path, node.lineno, target) for target in targets
                      if target == PACKAGE or target.startswith(PACKAGE + ".")]
    return found


# ---------------------------------------------------------------- the rules


def area(module: str) -> str:
    """``core``, ``adapters``, ``cli``, ...: the top-level part of multidiff that ``module`` is in."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def floor(module: str) -> int:
    if area(module) not in FLOORS:
        raise AssertionError(f"{module} is in no layer: give multidiff/{area(module)} a floor in FLOORS of "
                             f"tests/test_architecture.py (and in docs/ARCHITECTURE)")
    return FLOORS[area(module)]


def _adapter(module: str) -> str | None:
    """The adapter ``module`` belongs to (``image``, ``trajectory``), or None (not an adapter; the package)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "adapters" else None


def _where(edge: Import) -> str:
    return f"{edge.path}:{edge.line}"


def layer_violations(edges: list[Import]) -> list[Violation]:
    out = []
    for edge in edges:
        source, target = area(edge.module), area(edge.target)
        key = f"{edge.path} -> {edge.target}"
        if source in UTILITIES and edge.module != edge.target:
            out.append(Violation("utility", f"utility: {key}", f"{_where(edge)}: [utility] {edge.module} imports "
                                 f"{edge.target}; the utilities (atomic, runtime, multidiff/__init__) import nothing "
                                 f"from multidiff"))
        elif source == "adapters" and target not in ADAPTER_MAY_IMPORT and target != "adapters":
            out.append(Violation("adapter", f"adapter: {key}", f"{_where(edge)}: [adapter] {edge.module} imports "
                                 f"{edge.target} (L{floor(edge.target)} {target}); an adapter imports only L0-L2 "
                                 f"(core, backbones, train, atomic, runtime), never data/ or metrics/"))
        elif _adapter(edge.module) and _adapter(edge.target) and _adapter(edge.module) != _adapter(edge.target):
            out.append(Violation("adapter", f"adapter: {key}", f"{_where(edge)}: [adapter] {edge.module} imports "
                                 f"another adapter, {edge.target}; adapters never import each other (move what "
                                 f"they share down to core, backbones or train)"))
        elif floor(edge.module) < floor(edge.target):
            out.append(Violation("layer", f"layer: {key}", f"{_where(edge)}: [layer] {edge.module} "
                                 f"(L{floor(edge.module)} {source}) imports {edge.target} (L{floor(edge.target)} "
                                 f"{target}); imports point down only, not even inside a function"))
    return out


def _domain_recipe_modules(sources: dict[str, Source]) -> set[str]:
    return {name for name in sources if name.count(".") >= 2 and name.split(".")[1] == "recipes"
            and name.split(".")[2] not in SHARED_RECIPE_MODULES}


def _is_domain_module(name: str, domain_recipes: set[str]) -> bool:
    return area(name) in DOMAIN_AREAS or name in domain_recipes or any(
        name.startswith(recipe + ".") for recipe in domain_recipes)


def cli_violations(sources: dict[str, Source], edges: list[Import]) -> list[Violation]:
    """The CLI asks the registry; it imports no domain module and spells none in a string."""
    domain_recipes = _domain_recipe_modules(sources)
    out = [Violation("cli", f"cli: {edge.path} -> {edge.target}",
                     f"{_where(edge)}: [cli] {edge.module} imports the domain module {edge.target}; the CLI knows no "
                     f"domain: ask the recipe registry")
           for edge in edges if edge.module in CLI_MODULES and _is_domain_module(edge.target, domain_recipes)]
    for module in CLI_MODULES:
        if module not in sources:
            continue
        for node in ast.walk(ast.parse(sources[module].text)):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            for dotted in re.findall(rf"\b{PACKAGE}(?:\.\w+)+", node.value):  # e.g. import_module("multidiff...")
                name = _known(dotted, sources)
                if _is_domain_module(name, domain_recipes):
                    out.append(Violation("cli", f"cli: {sources[module].path} names {name}",
                                         f"{sources[module].path}:{node.lineno}: [cli] {module} names the domain "
                                         f"module {name} in a string; the CLI knows no domain: ask the recipe "
                                         f"registry"))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _child(package: str, module: str) -> str | None:
    """The child of ``package`` (a module or sub-package directly in it) that holds ``module``."""
    if not module.startswith(package + "."):
        return None
    return package + "." + module[len(package) + 1:].split(".")[0]


def cycle_violations(sources: dict[str, Source], edges: list[Import]) -> list[Violation]:
    out = []
    for package in sorted(name for name, source in sources.items() if source.is_package):
        graph, witness = {}, {}
        for edge in edges:
            a, b = _child(package, edge.module), _child(package, edge.target)
            if a and b and a != b:
                graph.setdefault(a, set()).add(b)
                witness.setdefault((a, b), edge)
        for component in _cycles(graph):
            members = set(component)
            links = [witness[(a, b)] for a in component for b in sorted(graph[a]) if b in members]
            names = ", ".join(member[len(package) + 1:] for member in component)
            out.append(Violation("cycle", f"cycle: {package}: {names}",
                                 f"[cycle] import circle among {package}'s {names}: "
                                 + "; ".join(f"{_where(edge)} imports {edge.target}" for edge in links)))
    return out


def missing_modules(sources: dict[str, Source]) -> list[Violation]:
    """Imports of multidiff modules that do not exist: ``import multidiff.x`` or ``from <module> import ...``."""
    out = []
    for module, tree in _trees(sources).items():
        source = sources[module]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [_base(module, source, node)]
            else:
                continue
            for name in names:
                if (name == PACKAGE or name.startswith(PACKAGE + ".")) and name not in sources:
                    out.append(Violation("missing", f"missing: {source.path} -> {name}",
                                         f"{source.path}:{node.lineno}: [missing] {module} imports {name}, which is no "
                                         f"module of multidiff (count the dots of a relative import)"))
    return out


def check_package(sources: dict[str, Source]) -> list[Violation]:
    edges = imports(sources)
    return (layer_violations(edges) + cli_violations(sources, edges) + cycle_violations(sources, edges)
            + missing_modules(sources))


# ---------------------------------------------------------------- benchmarks


def benchmark_sources(root: Path = ROOT) -> dict[str, Source]:
    return {file.stem: Source(file.relative_to(root).as_posix(), file.read_text())
            for file in sorted((root / "benchmarks").glob("*.py"))}


def check_benchmarks(sources: dict[str, Source]) -> list[Violation]:
    """Scripts import the shared modules, not each other, and no circle runs through them."""
    out, graph, witness = [], {}, {}
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source.text, filename=source.path)):
            if isinstance(node, ast.Import):
                targets = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                targets = [node.module.split(".")[0]]
            else:
                continue
            for target in targets:
                if target not in sources or target == name:
                    continue
                graph.setdefault(name, set()).add(target)
                witness.setdefault((name, target), node.lineno)
                if target not in BENCHMARK_SHARED:
                    out.append(Violation("benchmark", f"benchmark: {source.path} -> {target}",
                                         f"{source.path}:{node.lineno}: [benchmark] {name} imports the script "
                                         f"{target}; benchmark scripts share code through "
                                         f"{' and '.join(sorted(BENCHMARK_SHARED))} only"))
    for component in _cycles(graph):
        members = set(component)
        links = [f"{sources[a].path}:{witness[(a, b)]} imports {b}" for a in component for b in sorted(graph[a])
                 if b in members]
        out.append(Violation("benchmark", f"benchmark cycle: {', '.join(component)}",
                             f"[benchmark] import circle among benchmarks {', '.join(component)}: " + "; ".join(links)))
    return out


# ---------------------------------------------------------------- the tests


def _report(violations: list[Violation]) -> str:
    return "\n".join(sorted(str(v) for v in violations))


def test_multidiff_imports_point_down_and_hold_no_circle():
    violations = check_package(package_sources())
    new = [v for v in violations if v.key not in TEMPORARY_ALLOWED_VIOLATIONS]
    assert not new, f"{len(new)} import rule(s) broken (see tests/test_architecture.py):\n{_report(new)}"
    stale = TEMPORARY_ALLOWED_VIOLATIONS - {v.key for v in violations}
    assert not stale, ("fixed, so remove from TEMPORARY_ALLOWED_VIOLATIONS in tests/test_architecture.py:\n"
                       + "\n".join(sorted(stale)))


def test_benchmark_scripts_share_only_common_modules_and_hold_no_circle():
    violations = check_benchmarks(benchmark_sources())
    assert not violations, f"benchmark import rule(s) broken:\n{_report(violations)}"


def test_every_area_of_multidiff_has_a_floor():
    for module in package_sources():
        floor(module)  # raises naming the module that is in no layer


# ---------------------------------------------------------------- the checker catches what it should


def _with(extra: dict[str, str]) -> dict[str, Source]:
    """The real package plus synthetic modules ``{dotted name: source}`` (``__init__`` names: packages)."""
    sources = package_sources()
    for name, text in extra.items():
        is_package = name.endswith(".__init__")
        name = name.removesuffix(".__init__")
        path = name.replace(".", "/") + ("/__init__.py" if is_package else ".py")
        sources[name] = Source(path, text, is_package)
    return sources


@cache
def _keys_today() -> frozenset[str]:
    return frozenset(v.key for v in check_package(package_sources()))


def _new(extra: dict[str, str]) -> list[Violation]:
    """The violations that the synthetic modules ``extra`` add to the real package's."""
    return [v for v in check_package(_with(extra)) if v.key not in _keys_today()]


def _only(found: list[Violation], rule: str) -> Violation:
    """The one new violation of ``rule`` (an upward edge also closes a circle, reported as well)."""
    of_rule = [v for v in found if v.rule == rule]
    assert len(of_rule) == 1, _report(found)
    return of_rule[0]


def test_a_back_edge_inside_a_function_fails_naming_file_line_and_rule():
    found = _new({"multidiff.core._probe": "import torch\n\n\ndef f():\n    from ..recipes import registry\n"})
    assert _only(found, "layer").message.startswith(
        "multidiff/core/_probe.py:5: [layer] multidiff.core._probe (L0 core) imports multidiff.recipes.registry "
        "(L6 recipes)")


@pytest.mark.parametrize("statement, target", [("import multidiff.metrics.images", "multidiff.metrics.images"),
                                               ("from multidiff.data import images", "multidiff.data.images"),
                                               ("from ...train.side import fit", "multidiff.train.side")])
def test_back_edges_from_a_nested_module_fail(statement, target):
    found = _new({"multidiff.backbones._probe.__init__": "", "multidiff.backbones._probe.deep": statement})
    message = _only(found, "layer").message
    assert message.startswith("multidiff/backbones/_probe/deep.py:1: [layer]") and f"imports {target} " in message


def test_downward_edges_pass():
    assert not _new({"multidiff.train._probe": "from ..backbones import unet2d\nfrom ..core import schedules\n"
                                               "from ..runtime import cpu_threads\n",
                     "multidiff.recipes._probe": "import multidiff.metrics.images\nfrom ..data import images\n"})


@pytest.mark.parametrize("statement, expected", [
    ("from .audio import encode", "another adapter, multidiff.adapters.audio"),
    ("from ..data.images import load_digits", "never data/ or metrics/"),
    ("def f():\n    from ..metrics import images\n", "never data/ or metrics/"),
    ("from ..runtime import cpu_threads\nfrom ..train.side import fit\n", None),
])
def test_adapters_import_no_adapter_data_or_metrics(statement, expected):
    found = _new({"multidiff.adapters._probe": statement})
    if expected is None:
        assert not found, _report(found)
    else:
        violation = _only(found, "adapter")
        assert violation.message.startswith("multidiff/adapters/_probe.py:") and expected in violation.message


def test_utilities_import_nothing_from_multidiff_and_core_not_them():
    found = _new({"multidiff.runtime": "import torch\nfrom .core.utils import append_dims\n"})
    assert _only(found, "utility").message.startswith("multidiff/runtime.py:2: [utility]")
    found = _new({"multidiff.core._probe": "from ..atomic import atomic_write\n"})
    assert "(L1 atomic)" in _only(found, "layer").message


def test_a_circle_between_sibling_modules_fails():
    found = _new({"multidiff.core._probe_a": "from ._probe_b import x\n",
                  "multidiff.core._probe_b": "def x():\n    from . import _probe_a\n"})
    message = _only(found, "cycle").message
    assert "multidiff.core's _probe_a, _probe_b" in message
    assert "multidiff/core/_probe_a.py:1 imports multidiff.core._probe_b" in message
    assert "multidiff/core/_probe_b.py:2 imports multidiff.core._probe_a" in message


def test_a_circle_between_layers_and_one_through_a_re_export_fail():
    found = _new({"multidiff.core._probe": "from ..train import Trainer\n"})  # train imports core: a circle too
    assert {v.rule for v in found} == {"layer", "cycle"}
    assert re.search(r"import circle among multidiff's (\w+, )*core, (\w+, )*train\b", _report(found))
    # _pkg/__init__ re-exports f from _pkg.a; b imports it from the package: the edge is b -> a
    found = _new({"multidiff.core._pkg.__init__": "from .a import f\nfrom .b import g\n",
                  "multidiff.core._pkg.a": "from .b import g\n\n\ndef f():\n    return g\n",
                  "multidiff.core._pkg.b": "def g():\n    from multidiff.core._pkg import f\n"})
    assert [v.rule for v in found] == ["cycle"] and "multidiff.core._pkg's a, b" in found[0].message


def test_an_import_of_a_module_that_does_not_exist_fails():
    found = _new({"multidiff.recipes._probe.__init__": "", "multidiff.recipes._probe.deep":
                  "def f():\n    from ..metrics.text import KneserNeyLM\n"})
    assert _only(found, "missing").message == (
        "multidiff/recipes/_probe/deep.py:2: [missing] multidiff.recipes._probe.deep imports "
        "multidiff.recipes.metrics.text, which is no module of multidiff (count the dots of a relative import)")


def test_a_package_re_exporting_its_submodules_is_fine():
    assert not _new({"multidiff.core._pkg.__init__": "from .a import f\nfrom .b import g\n\nVERSION = 1\n",
                     "multidiff.core._pkg.a": "from . import VERSION\nfrom .b import g\n",
                     "multidiff.core._pkg.b": "import multidiff.core._pkg\n"})


@pytest.mark.parametrize("source, flagged", [
    ("from .recipes import registry\nfrom .train.checkpoint import load_config\n", False),
    ("from .recipes import images\n", True),
    ("from .recipes.images import ImageConfig\n", True),
    ("def f():\n    from .adapters.image import save_grid\n", True),
    ("import importlib\nLOADER = importlib.import_module('multidiff.metrics.audio')\n", True),
])
def test_the_cli_names_no_domain_module(source, flagged):
    found = [v for v in _new({"multidiff.cli": source}) if v.rule == "cli"]
    assert bool(found) == flagged, _report(found)


def test_a_benchmark_circle_and_a_script_importing_a_script_fail():
    sources = {"common": Source("benchmarks/common.py", "import math\n"),
               "docblock": Source("benchmarks/docblock.py", ""),
               "one": Source("benchmarks/one.py", "from common import rms\nfrom docblock import write_block\n"),
               "two": Source("benchmarks/two.py", "import sys\nfrom common import rms\n")}
    assert not check_benchmarks(sources)
    sources["one"] = Source("benchmarks/one.py", "from two import x\n")
    sources["two"] = Source("benchmarks/two.py", "def main():\n    import one\n")
    messages = _report(check_benchmarks(sources))
    assert "benchmarks/one.py:1: [benchmark] one imports the script two" in messages
    assert "benchmarks/two.py:2: [benchmark] two imports the script one" in messages
    assert "import circle among benchmarks one, two" in messages
