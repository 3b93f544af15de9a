"""The package's shape: no import cycle between probelint's modules, and the heavy optional
packages (angr and its loader, networkx) stay off the paths a user runs."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx

from tests.conftest import DEMO, ROOT

PACKAGE = ROOT / "probelint"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: set[str]) -> set[str]:
    """The probelint modules `node` imports: `from P import x` imports module P.x when there is
    one, else P itself (x is a name P defines)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    if node.level:  # relative: from the importer's package, one level up per extra dot
        package = importer if is_package else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    names = {f"{base}.{alias.name}" for alias in node.names}
    return {base if name not in modules else name for name in names} & modules


def import_graph() -> nx.DiGraph:
    """Every import anywhere in a module counts: module level, under `if TYPE_CHECKING:` and
    inside functions, since each is a dependency a layering must allow."""
    sources = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(sources)
    for name, path in sources.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph.add_edges_from((name, target) for target in
                                     _imported(node, name, path.name == "__init__.py", set(sources)) - {name})
    return graph


def cycles(graph: nx.DiGraph) -> list[list[str]]:
    """For each module in a cycle, the shortest cycle through it (without repeats), so that a
    large knot is reported as a few readable loops rather than every elementary cycle."""
    found: set[tuple[str, ...]] = set()
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        knot = graph.subgraph(component)
        for node in sorted(component):
            loops = [nx.shortest_path(knot, succ, node) for succ in knot.successors(node)]
            loop = [node, *min(loops, key=len)]
            start = loop.index(min(loop[:-1]))  # the same loop found from another node reads the same
            loop = loop[start:-1] + loop[: start + 1]
            found.add(tuple(loop))
    return sorted(map(list, found))


def test_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert graph.has_edge("probelint.checks._interference", "probelint.readers.spec")  # module level
    assert graph.has_edge("probelint.checks._interference", "probelint.checks")  # under TYPE_CHECKING
    assert graph.has_edge("probelint.cli", "probelint.vmtest.cli")  # inside a function
    assert graph.has_edge("probelint.vmtest.runner", "probelint.vmtest.download")  # relative
    assert cycles(nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(loop) for loop in found)


# angr and what it brings (CLE, pyvex, claripy, z3, pypcode) are the `reference` extra, for the
# CLE test only; networkx is imported only by checks._interference.build_graph, for tools.
HEAVY = ("angr", "cle", "pyvex", "claripy", "archinfo", "z3", "pypcode", "networkx")

_BLOCKED_RUN = """
import sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {heavy!r}:
            raise ImportError(f"probelint imported {{name}} on a user's path")

sys.meta_path.insert(0, Blocker())
from probelint.cli import main
for argv in {runs!r}:
    assert main(argv) in (0, 1), argv
"""


def test_user_paths_import_no_heavy_package(tmp_path):
    """Lint (every report format), explain and map on the demo kernel, with those packages blocked."""
    elf, probes = str(DEMO / "demo.elf"), str(DEMO / "probes.txt")
    runs = [[elf, probes, "--format", fmt] for fmt in ("text", "json", "sarif", "github", "gitlab")]
    runs += [["explain", elf, "demo_read+0x4"], ["map", elf, "--function", "demo_read"],
             ["map", elf, "--function", "demo_read", "--html", str(tmp_path / "page.html"), probes]]
    env = {**os.environ, "PROBELINT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _BLOCKED_RUN.format(heavy=HEAVY, runs=runs)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
