"""Probes of one set that interfere through an optimized jump window (KP301, KP302).

An optimized kprobe at P replaces [P, P+5) with a jump and runs copies of its whole window
[P, P+len) (5..19 bytes) out of line. Two kernel paths make probes in one set interact:

* `arch_check_optimized_kprobe` (arch/x86/kernel/kprobes/opt.c): P is not optimized while any
  other armed probe X lies at P+1 .. P+len-1;
* `get_optimized_kprobe` (kernel/kprobes.c), scanning the 18 bytes below a newly armed X: an
  optimized P covering X is unoptimized at once, and (the re-optimization being incomplete) stays
  an int3 probe after X goes away.

Either order, the steady state is the same: P is an int3 probe, X keeps its own verdict. The
interaction graph has an edge P -> X for every such pair: `build_graph` gives it as a networkx
DiGraph to tools and tests; the rules read the same edges (`window_edges`) without building it.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from probelint.readers.spec import ProbeSpec

if TYPE_CHECKING:
    import networkx as nx

    from probelint.checks import ProbeResult

__all__ = ["build_graph", "window_edges"]


_last: tuple[list[ProbeResult], list[tuple[int, int, int]]] | None = None


def window_edges(results: list[ProbeResult]) -> list[tuple[int, int, int]]:
    """(i, j, end of i's window) for every probe j strictly inside probe i's (optimizable) window.
    Found once per set: KP301 and KP302 read the same edges (KP301 unoptimizes the outer probes,
    which `optimizable_alone` still counts)."""
    global _last
    if _last is not None and _last[0] is results:
        return _last[1]
    armed: dict[int, dict[int, list[int]]] = {}  # id(image) -> address -> the armed probes there
    for i, r in enumerate(results):
        ctx = r.context
        # a disabled probe is disarmed: it neither blocks nor splits an optimized probe
        armed_probe = r.verdict.registers and isinstance(r.spec, ProbeSpec) and not r.spec.disabled
        if ctx is not None and ctx.image is not None and ctx.address is not None and armed_probe:
            armed.setdefault(id(ctx.image), {}).setdefault(ctx.address, []).append(i)
    sorted_armed = {image: sorted(at) for image, at in armed.items()}
    edges = []
    for i, r in enumerate(results):
        ctx = r.context
        optimizable_alone = r.verdict.optimized or "KP301" in r.verdict.reasons
        if not optimizable_alone or ctx is None or ctx.image is None or ctx.address is None:
            continue
        addresses = sorted_armed.get(id(ctx.image))
        if not addresses:
            continue
        end = ctx.window_end()
        inside = addresses[bisect.bisect_right(addresses, ctx.address) : bisect.bisect_left(addresses, end)]
        by_address = armed[id(ctx.image)]
        edges += [(i, j, end) for address in inside for j in by_address[address]]
    _last = (results, edges)
    return edges


def build_graph(results: list[ProbeResult]) -> nx.DiGraph:
    """The interaction graph: a node per armed probe, edge i -> j when j lies in i's window
    (attribute `window_end`). networkx is imported only when a graph is asked for (~170 ms)."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(i for i, r in enumerate(results) if r.verdict.registers and r.context is not None)
    for i, j, end in window_edges(results):
        graph.add_edge(i, j, window_end=end)
    return graph
