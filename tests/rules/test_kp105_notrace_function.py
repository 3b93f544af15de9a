from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC __fentry__
    ret
    .p2align 4
FUNC traced
    FENTRY
    push %rbp
    pop %rbp
    ret
    .p2align 4
FUNC untraced
    push %rbp
    pop %rbp
    ret
    .p2align 4
    .type traced.cold, @function
traced.cold:
    ud2
    .p2align 4
    .type untraced.cold, @function
untraced.cold:
    ud2
"""


def test_function_without_fentry_site(lint):
    plain, cold = lint(SOURCE, "untraced+1", "untraced.cold")
    assert rules_fired(plain) == ["KP105"] and plain.verdict.errno == "EINVAL"
    assert rules_fired(cold) == ["KP105"]


def test_traced_function_and_its_cold_piece_pass(lint):
    traced, cold = lint(SOURCE, "traced+5", "traced.cold")
    assert "KP105" not in rules_fired(traced) and traced.verdict.registers
    assert "KP105" not in rules_fired(cold) and cold.verdict.registers  # base name fallback


def test_register_kprobe_callers_skip_the_front_end(lint, build_kernel, tmp_path):
    """SystemTap calls register_kprobe() itself: the notrace test of kprobe_events is not met."""
    import probelint

    script = tmp_path / "t.stp"
    script.write_text('probe kprobe.function("untraced") { }\n')
    listed, stap = probelint.check([build_kernel(SOURCE)], ["untraced"], files=[script], hints="never")
    assert rules_fired(listed) == ["KP105"] and listed.spec.origin.path == "kprobe_events"
    assert "KP105" not in rules_fired(stap) and stap.verdict.registers
    assert stap.spec.origin.path == "register_kprobe"
