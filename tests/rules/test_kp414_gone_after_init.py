"""Probes defined before their module loads (Kernel.arrive): registered at MODULE_STATE_COMING,
checked against the module as it is then (trace_kprobe_module_callback)."""

import probelint
from tests.conftest import rules_fired

MODULE = """
    .text
FUNC mod_fn
    FENTRY
    push %rbp
    mov %rsp, %rbp
    pop %rbp
    ret
    .p2align 4
FUNC mod_guarded
    FENTRY
    push %rbp
    mov %rsp, %rbp
    pop %rbp
    ret
NOKPROBE mod_guarded
    .section .init.text, "ax"
FUNC mod_init
    FENTRY
    push %rbp
    mov %rsp, %rbp
    pop %rbp
    ret
    .p2align 4
FUNC mod_init_asm
    push %rbp
    mov %rsp, %rbp
    pop %rbp
    ret
    .section .modinfo
    .asciz "name=mymod"
"""
VMLINUX_61 = ".text\nFUNC vfs_read\n    FENTRY\n    ret\n"
VMLINUX_612 = VMLINUX_61 + "FUNC validate_probe_symbol\n    FENTRY\n    ret\n"


def _check(build_kernel, modules, probes, *, vmlinux=VMLINUX_61, pending=True):
    kernel = probelint.load_kernel([build_kernel(vmlinux), *(build_kernel(m, module=True) for m in modules)])
    if pending:
        kernel.arrive(m.name for m in kernel.modules)
    return list(probelint.check(kernel, probes, hints="never"))


def _verdict(result):
    v = result.verdict
    return v.registers, v.errno, v.optimized, v.ftrace


def test_init_text_registers_at_arrival_then_is_gone(build_kernel):
    """check_kprobe_address_safe takes init text while COMING; kprobes_module_callback kills the
    probe at MODULE_STATE_LIVE: registered, never optimized, ftrace-based on the fentry site."""
    entry, inside, asm = _check(build_kernel, [MODULE], ["mymod:mod_init", "mymod:mod_init+0x5", "mymod:mod_init_asm"])
    assert rules_fired(entry) == ["KP414", "KP201"] and "gone" in entry.findings[0].message
    assert _verdict(entry) == (True, None, False, True)
    assert rules_fired(inside) == ["KP414"] and _verdict(inside) == (True, None, False, False)
    assert rules_fired(asm) == ["KP105"] and _verdict(asm) == (False, "EINVAL", False, False)


def test_init_text_after_the_load_is_unknown(build_kernel):
    (after,) = _check(build_kernel, [MODULE], ["mymod:mod_init"], pending=False)
    assert rules_fired(after) == ["KP101"] and _verdict(after) == (False, "ENOENT", False, False)


def test_core_text_at_arrival_as_on_the_loaded_module(build_kernel):
    pending = _check(build_kernel, [MODULE], ["mymod:mod_fn+0x5"])
    loaded = _check(build_kernel, [MODULE], ["mymod:mod_fn+0x5"], pending=False)
    assert _verdict(pending[0]) == _verdict(loaded[0]) == (True, None, True, False)
    assert rules_fired(pending[0]) == rules_fired(loaded[0]) == []


def test_module_blacklist_not_yet_there_at_arrival(build_kernel):
    """trace_kprobe's module notifier (priority 2) runs before kprobes' (0), which adds the
    module's _kprobe_blacklist: a pending probe on a NOKPROBE_SYMBOL of the module registers."""
    (pending,) = _check(build_kernel, [MODULE], ["mymod:mod_guarded+0x5"])
    (loaded,) = _check(build_kernel, [MODULE], ["mymod:mod_guarded+0x5"], pending=False)
    assert rules_fired(loaded) == ["KP106"] and not loaded.verdict.registers
    assert "KP106" not in rules_fired(pending) and pending.verdict.registers


def test_plain_symbol_looked_up_when_written(build_kernel):
    """A plain SYM is resolved when the probe is written: the module is not there yet."""
    (pending,) = _check(build_kernel, [MODULE], ["mod_fn+0x5"])
    (loaded,) = _check(build_kernel, [MODULE], ["mod_fn+0x5"], pending=False)
    assert rules_fired(pending) == ["KP101"] and not pending.verdict.registers
    assert loaded.verdict.registers


DUP = """
    .text
LOCAL_FUNC dup
    FENTRY
    ret
"""


def test_duplicate_module_symbol_at_arrival_is_eaddrnotavail(build_kernel):
    """>= 6.12 register_module_trace_kprobe validates MOD:SYM at COMING (init symbols counted) and
    the callback logs the raw -EADDRNOTAVAIL; written after the load, the parser says EINVAL."""
    init = DUP.replace(".text", '.section .init.text, "ax"')
    module = [DUP + '    .section .modinfo\n    .asciz "name=mymod"\n', init]
    kernel = probelint.load_kernel([build_kernel(VMLINUX_612), build_kernel(module, module=True)])
    (after,) = probelint.check(kernel, ["mymod:dup"], hints="never")
    assert rules_fired(after) == ["KP105"] or after.verdict.registers  # one core copy: unique after the load
    kernel.arrive(["mymod"])
    (pending,) = probelint.check(kernel, ["mymod:dup"], hints="never")
    assert rules_fired(pending) == ["KP102"] and _verdict(pending) == (False, "EADDRNOTAVAIL", False, False)
    (old,) = _check(build_kernel, [module], ["mymod:dup"])
    assert "KP102" not in rules_fired(old) and old.verdict.registers  # 6.1.y counts no MOD:SYM


def test_pending_option(build_kernel, tmp_path):
    """`probelint --pending MOD`: the command line's way to say the probes come before MOD."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    probes = tmp_path / "p.txt"
    probes.write_text("mymod:mod_init\nmymod:mod_fn+0x5\n")
    images = [str(build_kernel(VMLINUX_61)), str(build_kernel(MODULE, module=True))]

    def run(*extra):
        proc = subprocess.run([sys.executable, "-m", "probelint", "--format", "json", *images, str(probes), *extra],
                              capture_output=True, text=True, cwd=ROOT)
        return [(p["verdict"]["registers"], p["verdict"]["optimized"]) for p in json.loads(proc.stdout)["probes"]]

    assert run() == [(False, False), (True, True)]
    assert run("--pending", "mymod") == [(True, False), (True, True)]


def test_init_data_at_arrival_is_notrace(build_kernel):
    """xfs:test (an .init.data object) on the booted 7.2, defined before xfs loads: found in the
    COMING kallsyms, then "Could not probe notrace function" (EINVAL), not ENOENT."""
    data = MODULE.replace("    .section .modinfo", '    .section .init.data, "aw"\n    .type init_table, @object\n'
                          "init_table:\n    .quad 1\n    .size init_table, 8\n    .section .modinfo")
    (pending,) = _check(build_kernel, [data], ["mymod:init_table"])
    assert rules_fired(pending) == ["KP105"] and _verdict(pending) == (False, "EINVAL", False, False)
    (after,) = _check(build_kernel, [data], ["mymod:init_table"], pending=False)
    assert rules_fired(after) == ["KP101"] and after.verdict.errno == "ENOENT"
