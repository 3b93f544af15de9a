"""KP301/KP302: a probe inside another probe's jump window."""

from probelint.checks._interference import build_graph
from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    push %rbp               /* +5  window of +5: push, mov, mov = 7 bytes */
    mov %rsp, %rbp          /* +6 */
    mov %rdi, %rax          /* +9 */
    mov %rsi, %rax          /* +0xc */
    mov %rdx, %rax          /* +0xf */
    mov %rcx, %rax          /* +0x12 */
    pop %rbp
    ret
"""


def test_inner_probe_unoptimizes_outer(lint):
    outer, inner = lint(SOURCE, "f+5", "f+9")
    assert not outer.verdict.optimized and rules_fired(outer) == ["KP301"]
    assert inner.verdict.optimized and rules_fired(inner) == ["KP302"]


def test_order_does_not_matter(lint):
    inner, outer = lint(SOURCE, "f+9", "f+5")
    assert not outer.verdict.optimized and inner.verdict.optimized


def test_probe_just_past_the_window_is_independent(lint):
    a, b = lint(SOURCE, "f+5", "f+0xc")
    assert a.verdict.optimized and b.verdict.optimized
    assert not rules_fired(a) and not rules_fired(b)


def test_graph_edges(lint):
    results = lint(SOURCE, "f+5", "f+6", "f+9", "f+0xf")
    graph = build_graph(results)
    # windows: +5 -> [5, 0xc), +6 -> [6, 0xc), +9 -> [9, 0xf), +0xf -> [0xf, 0x12)
    assert set(graph.edges) == {(0, 1), (0, 2), (1, 2)}
    assert [r.verdict.optimized for r in results] == [False, False, True, True]


def test_disabled_inner_probe_does_not_block(lint):
    outer, inner = lint(SOURCE, "f+5", "f+9   # probelint: disabled")
    assert outer.verdict.optimized and not rules_fired(outer)
    assert rules_fired(inner) == ["KP210"] and not inner.verdict.optimized and inner.verdict.registers
