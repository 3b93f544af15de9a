import probelint
from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    push %rbp
    mov %rsp, %rbp
    pop %rbp
    ret
"""


def _check(build_kernel, unloaded: frozenset[str], *probes: str):
    kernel = probelint.load_kernel([build_kernel(SOURCE)])
    kernel.unloaded = unloaded
    return list(probelint.check(kernel, list(probes), hints="never"))


def test_probe_on_a_module_not_loaded_is_accepted_and_pending(build_kernel):
    """trace_kprobe.c register_trace_kprobe: -ENOENT for a module that is not loaded is success."""
    (result,) = _check(build_kernel, frozenset({"aesni_intel"}), "aesni_intel:aesni_set_key+0x4")
    assert rules_fired(result) == ["KP413"] and "pending" in result.findings[0].message
    v = result.verdict
    assert (v.registers, v.errno, v.optimized, v.ftrace) == (True, None, False, False)


def test_module_not_given_is_still_not_checked(build_kernel):
    (result,) = _check(build_kernel, frozenset({"other"}), "xfs:xfs_buf_read_map")
    assert rules_fired(result) == ["KP402"] and result.verdict.registers is None


def test_the_vmlinux_beside_it_is_checked_as_before(build_kernel):
    (result,) = _check(build_kernel, frozenset({"aesni_intel"}), "f+0x5")
    assert rules_fired(result) == [] and result.verdict.registers and result.verdict.optimized
