"""Rules decided by the kernel configuration (--config or inference)."""

import probelint
from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    push %rbp
    mov %rsp, %rbp
    mov %rsp, %rbp
    pop %rbp
    ret
"""


def kernel_with(build_kernel, dotconfig: str):
    path = build_kernel(SOURCE)
    config = path.with_name("test.config")
    config.write_text(dotconfig)
    return probelint.load_kernel([path], dotconfig=config)


def test_without_kprobes_on_ftrace_or_optprobes(build_kernel):
    kernel = kernel_with(build_kernel, "# CONFIG_KPROBES_ON_FTRACE is not set\n# CONFIG_OPTPROBES is not set\n")
    entry, body = probelint.check(kernel, ["f", "f+5"])
    assert rules_fired(entry) == ["KP117"] and entry.verdict.errno == "EINVAL"
    assert rules_fired(body) == ["KP209"] and body.verdict.registers and not body.verdict.optimized


def test_with_both(build_kernel):
    kernel = kernel_with(build_kernel, "CONFIG_KPROBES_ON_FTRACE=y\nCONFIG_OPTPROBES=y\n")
    entry, body = probelint.check(kernel, ["f", "f+5"])
    assert entry.verdict.ftrace and body.verdict.optimized
