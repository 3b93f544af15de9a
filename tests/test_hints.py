"""Fix hints: the nearest offsets that register, or that would be optimized next to the set."""

import probelint

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
    movabs $0x1122334455667788, %rax   /* +0x15 */
    pop %rbp
    ret
"""


def hints(result):
    return [n for f in result.findings for n in f.notes if n.startswith("fix:")]


def test_mid_instruction_gets_the_nearest_registering_offset(build_kernel):
    kernel = probelint.load_kernel([build_kernel(SOURCE)])
    results = probelint.check(kernel, ["f+0x17"])  # hints included, as on the command line
    assert hints(results[0]) == ["fix: the nearest offset that registers is f+0x15 (optimized)"]


def test_outer_probe_gets_an_offset_clear_of_the_inner_one(build_kernel):
    kernel = probelint.load_kernel([build_kernel(SOURCE)])
    results = probelint.check(kernel, ["f+5", "f+9"])  # hints included, as on the command line
    (hint,) = hints(results[0])
    moved = hint.split()[-2]
    outer, inner = probelint.check(kernel, [moved, "f+9"])
    assert outer.verdict.optimized and inner.verdict.optimized, hint


def test_inner_probe_is_told_where_the_window_ends(build_kernel):
    kernel = probelint.load_kernel([build_kernel(SOURCE)])
    results = probelint.check(kernel, ["f+5", "f+9"])  # hints included, as on the command line
    assert hints(results[1]) == ["fix: f+0xc is the nearest boundary past that window (f+0xc)"]
