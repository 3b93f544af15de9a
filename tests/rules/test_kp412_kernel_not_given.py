from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC thunked
    FENTRY
    push %rbp
    mov %rsp, %rbp
    pop %rbp
    jmp __x86_indirect_thunk_rax
FUNC tail_call
    FENTRY
    push %rbp
    mov %rsp, %rbp
    pop %rbp
    jmp kfree
    .section .modinfo
    .asciz "name=mymod"
"""


def test_jump_to_a_thunk_leaves_the_optimization_unchecked(lint):
    """6.1 insn_is_indirect_jump: a jump into [__indirect_thunk_start, __indirect_thunk_end] is an
    indirect jump, and only the vmlinux says where that range is: whether a probe of the function
    is optimized is not known (null), whether it registers is (a boundary registers, a byte inside
    an instruction is EILSEQ)."""
    boundary, inside = lint(SOURCE, "mymod:thunked+0x5", "mymod:thunked+0x7", module=True)
    assert rules_fired(boundary) == ["KP412"] and "__x86_indirect_thunk_rax" in boundary.findings[0].message
    assert boundary.verdict.registers is True and boundary.verdict.optimized is None
    assert "optimized was not checked" in boundary.findings[0].message
    assert inside.verdict.errno == "EILSEQ" and inside.verdict.optimized is False


def test_tail_call_into_the_kernel_is_checked(lint):
    (result,) = lint(SOURCE, "mymod:tail_call+0x5", module=True)
    assert "KP412" not in rules_fired(result) and result.verdict.registers and result.verdict.optimized


def test_plain_symbol_uniqueness_needs_the_vmlinux(lint):
    (result,) = lint(SOURCE, "tail_call+0x5", module=True)
    assert rules_fired(result) == ["KP412"] and "unique" in result.findings[0].message


def test_a_module_alone_brings_its_vmlinux_from_its_debug_tree(build_kernel, tmp_path):
    """ROOT/usr/lib/debug/lib/modules/R/...ko is loaded into ROOT/usr/lib/debug/boot/vmlinux-R."""
    import json
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    release = "6.1.0-99-test"
    tree = tmp_path / "usr" / "lib" / "debug"
    (tree / "boot").mkdir(parents=True)
    (tree / "lib" / "modules" / release / "kernel").mkdir(parents=True)
    shutil.copy(build_kernel(".text\nFUNC kfree\n    FENTRY\n    ret\n"), tree / "boot" / f"vmlinux-{release}")
    ko = tree / "lib" / "modules" / release / "kernel" / "mymod.ko"
    shutil.copy(build_kernel(SOURCE + f'\n    .asciz "vermagic={release} SMP mod_unload"\n', module=True), ko)
    probes = tmp_path / "p.txt"
    probes.write_text("tail_call+0x5\n")
    proc = subprocess.run([sys.executable, "-m", "probelint", "--cache-dir", str(tmp_path / "c"), "--format", "json",
                           str(ko), str(probes)],
                          capture_output=True, text=True, cwd=ROOT)
    assert f"using {tree / 'boot' / f'vmlinux-{release}'}" in proc.stderr
    (probe,) = json.loads(proc.stdout)["probes"]
    assert probe["verdict"]["registers"] and not any(f["rule"] == "KP412" for f in probe["findings"])


def _site_user(name: str, call: str) -> str:
    """A function whose second instruction, at +0x6, is `call` (label 1), with a window's room after it."""
    return f"""
    .text
FUNC {name}
    FENTRY
    push %rbp
1:  {call}
    pop %rbp
    mov %rax, %rbx
    mov %rbx, %rcx
    mov %rcx, %rdx
    mov %rdx, %rsi
    ret
"""


PARAVIRT = _site_user("pv_user", "call *pv_ops+8(%rip)") + """
    .section .parainstructions, "a"
    .quad 1b
    .byte 3, 6
    .balign 16
    .section .modinfo
    .asciz "name=mymod"
"""


def test_a_paravirt_site_decides_only_the_probes_that_read_it(lint):
    """apply_paravirt rewrites the 6-byte `call *pv_ops(%rip)` in place (booted generic 6.1: a
    direct call and a nop, or cli/sti/pushf;pop and a NOP): a probe at or inside the site, or whose
    jump window reaches it, needs the vmlinux; a probe after it reads the same bytes either way."""
    at_site, inside, window_reaches, after = lint(PARAVIRT, "mymod:pv_user+0x6", "mymod:pv_user+0xb",
                                                  "mymod:pv_user+0x5", "mymod:pv_user+0xc", module=True)
    for result in (at_site, inside):
        assert rules_fired(result) == ["KP412"] and result.verdict.registers is None, result.spec.text
        assert "paravirt call site at mymod:pv_user+0x6" in result.findings[0].message
    # the push before the site registers; its window copies the site, whose live bytes only the
    # vmlinux gives: no optimizer rule is run on the file's bytes
    assert rules_fired(window_reaches) == ["KP412"] and window_reaches.verdict.registers is True
    assert window_reaches.verdict.optimized is None
    assert "KP412" not in rules_fired(after) and after.verdict.registers and after.verdict.optimized


def test_verbose_says_where_the_vmlinux_was_looked_for(build_kernel, tmp_path):
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    ko = tmp_path / "mymod.ko"
    shutil.copy(build_kernel(SOURCE + '\n    .asciz "vermagic=6.1.0-98-none SMP mod_unload"\n', module=True), ko)
    probes = tmp_path / "p.txt"
    probes.write_text("mymod:tail_call+0x5\n")
    proc = subprocess.run([sys.executable, "-m", "probelint", "-v", "--no-cache", str(ko), str(probes)],
                          capture_output=True, text=True, cwd=ROOT)
    line = next(ln for ln in proc.stderr.splitlines() if "no vmlinux given or found" in ln)
    assert "(6.1.0-98-none)" in line and "/usr/lib/debug/boot/vmlinux-6.1.0-98-none" in line and "KP412" in line


RETPOLINE = _site_user("rp_user", "call __x86_indirect_thunk_rax") + """
FUNC rp_tail
    FENTRY
    push %rbp
    pop %rbp
    mov %rax, %rbx
    mov %rbx, %rcx
    mov %rcx, %rdx
2:  jmp __x86_indirect_thunk_rax
    .section .retpoline_sites, "a"
    .long 1b - .
    .long 2b - .
    .section .modinfo
    .asciz "name=mymod"
"""


def test_a_retpoline_call_site_decides_only_the_probes_that_read_it(build_kernel):
    """Without RETPOLINE (spectre_v2=off: the noretpoline profile) apply_retpolines rewrites a thunk
    call to `call *%reg` and NOPs in its own 5 bytes; a thunk jump becomes `jmp *%reg`, an indirect
    jump that KP205 sees from anywhere in the function."""
    import probelint

    module = build_kernel(RETPOLINE, module=True)
    at_site, after, tail = probelint.check([module], ["mymod:rp_user+0x6", "mymod:rp_user+0xb",
                                                      "mymod:rp_tail+0x5"], cpu_profile="noretpoline",
                                           hints="never")
    assert rules_fired(at_site) == ["KP412"] and "retpoline site at mymod:rp_user+0x6" in at_site.findings[0].message
    assert "KP412" not in rules_fired(after) and after.verdict.registers
    assert rules_fired(tail) == ["KP412"] and tail.verdict.registers and tail.verdict.optimized is None
    assert "retpoline jump at mymod:rp_tail" in tail.findings[0].message


def test_an_unknown_optimization_is_null_in_json_and_said_in_the_summary(build_kernel, tmp_path):
    import json
    import subprocess
    import sys

    import jsonschema

    from tests.conftest import ROOT
    from tests.test_cli import SCHEMA

    ko = tmp_path / "mymod.ko"
    ko.write_bytes(build_kernel(SOURCE, module=True).read_bytes())
    probes = tmp_path / "p.txt"
    probes.write_text("mymod:thunked+0x5\nmymod:tail_call+0x5\n")

    def run(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "probelint", "--no-cache", *args, str(ko), str(probes)],
                              capture_output=True, text=True, cwd=ROOT).stdout

    data = json.loads(run("--format", "json"))
    jsonschema.validate(data, SCHEMA)
    thunked, tail = (p["verdict"] for p in data["probes"])
    assert thunked == {"registers": True, "errno": None, "optimized": None, "ftrace": False}
    assert tail["optimized"] is True
    assert "2 register (1 optimized, 0 ftrace-based, 1 optimization not checked)" in run()
