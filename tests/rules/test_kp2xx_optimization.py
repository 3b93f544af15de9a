"""KP202-KP208: registers, but the kernel keeps an int3 probe (can_optimize and its window checks)."""

import probelint
from probelint.arch.x86.cpu import CpuProfile
from tests.conftest import rules_fired

SOURCE = """
    RETURN_THUNK
    .text
FUNC callee
    FENTRY
    ret
    .p2align 4
FUNC plain                  /* optimizable from +5 */
    FENTRY
    push %rbp               /* +5 */
    mov %rsp, %rbp          /* +6 */
    mov %rdi, %rax          /* +9 */
    add $1, %rax            /* +0xc */
    pop %rbp                /* +0x10 */
    RETURN                  /* +0x11: jmp __x86_return_thunk */
    .p2align 4, 0xcc
FUNC branchy
    FENTRY
    push %rbp               /* +5 */
    test %rdi, %rdi         /* +6 */
    je 1f                   /* +9 -> +0xe */
    mov %rdi, %rax          /* +0xb */
1:  mov %rsi, %rax          /* +0xe */
    mov %rdx, %rax
    mov %rcx, %rax
    pop %rbp
    ret
    .p2align 4, 0xcc
FUNC calls
    FENTRY
    push %rbx               /* +5 */
    call callee             /* +6 */
    mov %rax, %rbx
    mov %rax, %rbx
    pop %rbx
    ret
    .p2align 4, 0xcc
FUNC user_copy
    FENTRY
    push %rbp               /* +5 */
    mov %rsp, %rbp
    mov %rsp, %rbp
2:  mov (%rsi), %eax
    pop %rbp
    ret
3:  xor %eax, %eax
    ret
    EXTABLE 2b, 3b
    .p2align 4, 0xcc
FUNC switch
    FENTRY
    push %rbp               /* +5 */
    mov %rsp, %rbp
    mov %rsp, %rbp
    jmp *%rax
    .p2align 4, 0xcc
FUNC tail
    FENTRY
    push %rbp               /* +5 */
    pop %rbp
    ret                     /* +7 */
    .fill 8, 1, 0x90        /* single-byte nops to +0x10: padding belongs to tail */
FUNC site_after
    FENTRY
    push %rbp               /* +5 */
    push %rbx               /* +6 */
    JUMP_LABEL 4f           /* +7 */
4:  pop %rbx
    pop %rbp
    mov %rsp, %rbp
    mov %rsp, %rbp
    ret
"""


def test_plain_window_is_optimized(lint):
    (result,) = lint(SOURCE, "plain+5")
    assert result.verdict.optimized and not result.findings


def test_each_precondition(lint):
    results = lint(SOURCE, "plain+0x10", "tail+0xd", "branchy+5", "branchy+0xb", "calls+5", "user_copy+5",
                   "switch+5", "site_after+5")
    expected = ["KP207", "KP202", "KP207", "KP206", "KP207", "KP203", "KP205", "KP208"]
    for result, rule in zip(results, expected, strict=True):
        assert result.verdict.registers and not result.verdict.optimized
        assert rules_fired(result) == [rule], (result.spec.text, result.findings)


def test_branch_to_exactly_p_plus_5_blocks(lint):
    # je at +9 targets +0xe = (+9) + 5: insn_jump_into_range is inclusive at the upper end
    (result,) = lint(SOURCE, "branchy+9")
    assert rules_fired(result) == ["KP206"]


def test_cpu_profile_decides_return_sites(build_kernel):
    kernel = probelint.load_kernel([build_kernel(SOURCE)])
    assert kernel.profile is CpuProfile.QEMU64 and kernel.vmlinux.profile is CpuProfile.QEMU64  # the default
    ret_inside = probelint.check(kernel, ["plain+5", "plain+0x12"])
    assert ret_inside[0].verdict.optimized
    assert ret_inside[1].verdict.errno == "EINVAL"  # int3 byte of a `ret; int3 x4` site
    kernel = probelint.load_kernel([build_kernel(SOURCE)], profile=CpuProfile.RETHUNK)
    thunked = probelint.check(kernel, ["plain+5", "plain+0x12"])
    assert rules_fired(thunked[0]) == ["KP205"]  # jmp into the thunk area
    assert thunked[1].verdict.errno == "EILSEQ"  # inside the 5-byte jmp


UNDECODABLE = """
    .text
FUNC g
    FENTRY
    push %rbp
    mov %rsp, %rbp
    mov %rsp, %rbp
    pop %rbp
    ret
    .byte 0xc4, 0xff, 0xff   /* a VEX prefix with no valid continuation */
"""


def test_undecodable_bytes_anywhere_in_the_function(lint):
    (result,) = lint(UNDECODABLE, "g+5")
    assert result.verdict.registers and rules_fired(result) == ["KP204"]
