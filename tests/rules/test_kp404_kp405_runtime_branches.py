from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    push %rbp               /* +5: window push, mov, mov -> +0xc */
    mov %rsp, %rbp          /* +6 */
    mov %rdi, %rax          /* +9 */
    mov %rsi, %rax          /* +0xc */
    JUMP_LABEL 2f           /* +0xf */
    mov %rdx, %rax          /* +0x14 */
2:  mov %rcx, %rax          /* +0x17 */
    mov %rcx, %rax          /* +0x1a */
    mov %rcx, %rax          /* +0x1d */
    pop %rbp
    ret
    .p2align 4
    .type f.cold, @function
f.cold:
    jmp f+0x9
"""


def test_cold_piece_jumps_into_window(lint):
    (result,) = lint(SOURCE, "f+5")
    assert result.verdict.optimized  # the kernel does not look at f.cold
    assert rules_fired(result) == ["KP405"] and "f.cold" in result.findings[0].message


def test_jump_label_target_in_window(lint):
    (result,) = lint(SOURCE, "f+0x14")  # the label at +0xf branches to +0x17 = P+3 when its key is on
    assert result.verdict.optimized and "KP404" in rules_fired(result)


def test_no_runtime_branch(lint):
    (result,) = lint(SOURCE, "f+0x1a")
    assert result.verdict.optimized and not rules_fired(result)


def test_no_hazard_of_an_optimized_probe_once_the_set_unoptimizes_it(lint):
    """A second probe inside the window leaves f+5 an int3 probe (KP301): the hazards of an
    optimized jump (KP404, KP405) no longer apply and are not reported."""
    outer, inner = lint(SOURCE, "f+5", "f+6")
    assert not outer.verdict.optimized and rules_fired(outer) == ["KP301"] and "KP302" in rules_fired(inner)
    jl_outer, jl_inner = lint(SOURCE, "f+0x14", "f+0x17")
    assert not jl_outer.verdict.optimized and "KP404" not in rules_fired(jl_outer)
    assert "KP302" in rules_fired(jl_inner)
