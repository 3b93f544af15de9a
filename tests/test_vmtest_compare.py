"""The ground-truth comparison: sampler and compare logic on a fixture kernel (fast, no QEMU), and
a fixed CI sample run in Debian's 6.1 cloud kernel under QEMU (markers ``kernel`` and ``vm``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import iced_x86
import pytest

import probelint
from probelint.vmtest.compare import (
    CpuRun,
    PredictedVerdict,
    agreement,
    compare_verdicts,
    render_text,
    render_validation,
    runs_from_json,
    to_json,
)
from probelint.vmtest.runner import KernelVerdict
from probelint.vmtest.sampler import (
    CATEGORIES,
    Sample,
    draw_sample,
    format_sample_file,
    parse_sample_file,
    plan_batches,
)

CI_SAMPLE = Path(__file__).parent / "data" / "vmtest_ci_sample.txt"

# One unit per string; dup_fn exists twice (two static functions of one name).
UNITS = [
    """
    .data
jl_key: .quad 0
sc_key: .quad 0
    .text
    .p2align 4
FUNC plain
    FENTRY
    push %rbp
    mov %rsp, %rbp
    test %rdi, %rdi
    je 1f
    add $1, %rax
1:  pop %rbp
    ret
    int3
    int3
    int3
    .p2align 4
FUNC with_jump_label
    FENTRY
    push %rbx
    nop
1:  .byte 0x0f, 0x1f, 0x44, 0x00, 0x00
2:  pop %rbx
    ret
    .pushsection __jump_table, "aw"
    .balign 8
    .long 1b - .
    .long 2b - .
    .quad jl_key - .
    .popsection
    .p2align 4
FUNC with_static_call
    FENTRY
    push %rbx
    nop
1:  call plain
    pop %rbx
    ret
    .pushsection .static_call_sites, "a"
    .long 1b - .
    .long sc_key - .
    .popsection
    .p2align 4
FUNC with_extable
    FENTRY
    xor %eax, %eax
1:  mov (%rdi), %rax
2:  add $2, %rax
    ret
    .pushsection __ex_table, "a"
    .long 1b - .
    .long 2b - .
    .long 0
    .popsection
    .p2align 4
FUNC with_bug
    FENTRY
    test %rdi, %rdi
    jne 2f
1:  ud2
2:  ret
    .pushsection __bug_table, "aw"
    .long 1b - .
    .long 0
    .short 0
    .short 0
    .popsection
    .p2align 4
FUNC with_return_site
    FENTRY
    mov %rdi, %rax
1:  jmp __x86_return_thunk
    .pushsection .return_sites, "a"
    .long 1b - .
    .popsection
    .p2align 4
FUNC with_indirect_jump
    FENTRY
    mov %rdi, %rax
    add $8, %rax
    jmp *%rax
    .p2align 4
FUNC with_thunk_jump
    FENTRY
    mov %rdi, %rax
    add $8, %rax
    jmp __x86_indirect_thunk_rax
    .p2align 4
FUNC untraced
    push %rbp
    mov %rsp, %rbp
    pop %rbp
    ret
    .p2align 4
    .type plain.cold, @function
plain.cold:
    mov $1, %eax
    ud2
    .p2align 4
FUNC guarded
    FENTRY
    push %rbp
    pop %rbp
    ret
    NOKPROBE guarded
    .p2align 4
LOCAL_FUNC dup_fn
    FENTRY
    mov $1, %eax
    ret
    .section .noinstr.text, "ax"
    .p2align 4
FUNC in_noinstr
    push %rbp
    pop %rbp
    ret
    .section .entry.text, "ax"
    .p2align 4
FUNC in_entry
    push %rbp
    pop %rbp
    ret
    .section .text..__x86.indirect_thunk, "ax"
FUNC __x86_indirect_thunk_rax
    jmp *%rax
    int3
    .section .text..__x86.return_thunk, "ax"
FUNC __x86_return_thunk
    ret
    int3
    .section .init.text, "ax"
    .p2align 4
FUNC in_init
    FENTRY
    push %rbp
    pop %rbp
    ret
""",
    """
    .text
    .p2align 4
LOCAL_FUNC dup_fn
    FENTRY
    mov $2, %eax
    ret
""",
]


@pytest.fixture(scope="module")
def fixture_kernel(build_kernel):
    return probelint.load_kernel([build_kernel(UNITS)])


def _resolve(kernel, samples):
    return {s.spec: r for s, r in zip(samples, probelint.check(kernel, [s.spec for s in samples]), strict=True)}


def test_sample_is_deterministic(fixture_kernel):
    a = draw_sample(fixture_kernel, 60, seed=7)
    assert a == draw_sample(fixture_kernel, 60, seed=7)
    assert len({s.spec for s in a}) == len(a)
    assert {s.category for s in a} <= set(CATEGORIES)
    assert not any(s.category.startswith("module") for s in a)  # no module given


STABLE_SAMPLE = Path(__file__).parent / "data" / "sample-6.1-xfs-seed7.txt"


@pytest.mark.kernel
def test_sample_is_stable(debian) -> None:
    """A fixed seed draws the same probes on the real kernel as when the file was saved. The file
    was checked against the sampler from before its categories shared the linter's code (KP205,
    KP206): only jump_into_window's pick inside each of the same functions moved (8 of 290 lines:
    its candidates were a set, now they come in address order)."""
    kernel = probelint.load_kernel([debian.vmlinux, debian.xfs])
    saved = STABLE_SAMPLE.read_text()
    header = saved.splitlines()[0] + "\n"
    assert format_sample_file(draw_sample(kernel, 300, seed=7)) == saved.removeprefix(header)


def test_sample_categories_hit_their_sites(fixture_kernel):
    vm = fixture_kernel.vmlinux
    samples = draw_sample(fixture_kernel, 120, seed=1)
    cats = Counter(s.category for s in samples)
    for cat in ("jump_label", "jump_label_before", "static_call", "static_call_before", "bug_site",
                "ex_table_insn", "ex_table_fn", "return_site", "jump_into_window", "indirect_jump_fn",
                "thunk_jump_fn", "nokprobe", "noinstr", "entry_text", "init_text", "duplicate_name",
                "cold_part", "notrace", "last_insn", "padding", "entry", "mid_insn", "boundary", "address"):
        assert cats[cat], f"no {cat} sample"
    res = _resolve(fixture_kernel, samples)
    addr = {s.spec: res[s.spec].context.address for s in samples if res[s.spec].context is not None}
    jl = {e["code"] for e in vm.table("jump_table")}
    sc = {e["addr"] for e in vm.table("static_call_sites")}
    for s in samples:
        a = addr.get(s.spec)
        sym = vm.lookup(a) if a is not None else None
        if s.category == "jump_label":
            assert a in jl
        elif s.category == "jump_label_before":
            assert any(1 <= site - a <= 4 for site in jl)
        elif s.category == "static_call":
            assert a in sc
        elif s.category == "static_call_before":
            assert any(1 <= site - a <= 4 for site in sc)
        elif s.category == "ex_table_insn":
            assert a in {e["insn"] for e in vm.table("ex_table")}
        elif s.category == "bug_site":
            assert a in {e["addr"] for e in vm.table("bug_table")}
        elif s.category == "return_site":
            assert a in {e["addr"] for e in vm.table("return_sites")}
        elif s.category == "entry":
            assert s.spec.endswith("+0x0")
        elif s.category == "mid_insn":
            assert not vm.function(sym).is_boundary(a)
        elif s.category in ("boundary", "last_insn"):
            assert vm.function(sym).is_boundary(a) and a != sym.address
        elif s.category == "padding":
            insn = vm.function(sym).insn_at_or_before(a)
            assert insn.address == a and insn.decoded.mnemonic in (iced_x86.Mnemonic.INT3, iced_x86.Mnemonic.NOP)
        elif s.category == "jump_into_window":
            fn = vm.function(sym)  # plain's je, or with_bug's jne over the ud2
            assert fn.is_boundary(a) and a != sym.address and fn.branch_into_window(a) is not None
        elif s.category == "indirect_jump_fn":
            assert sym.name in ("with_indirect_jump", "__x86_indirect_thunk_rax")
        elif s.category == "thunk_jump_fn":
            assert sym.name == "with_thunk_jump"
        elif s.category == "nokprobe":
            assert sym.name == "guarded"
        elif s.category == "noinstr":
            assert sym.name == "in_noinstr"
        elif s.category == "entry_text":
            assert sym.name == "in_entry"
        elif s.category == "init_text":
            assert sym.name == "in_init"
        elif s.category == "duplicate_name":
            assert s.spec.startswith("dup_fn+") and res[s.spec].verdict.errno == "EADDRNOTAVAIL"
        elif s.category == "cold_part":
            assert sym.name == "plain.cold"
        elif s.category == "notrace":
            assert vm.ftrace_site_in(sym.address, sym.end) is None
        elif s.category == "address":
            assert s.spec.startswith("0x")


def test_plan_batches_separates_functions():
    samples = [Sample(f"f{i % 3}+{i:#x}", "boundary", f"vmlinux:f{i % 3}") for i in range(9)]
    samples += [Sample(f"g{i}", "entry", f"vmlinux:g{i}") for i in range(7)]
    planned = plan_batches(samples, 4)
    assert sorted(planned, key=lambda s: s.spec) == sorted(samples, key=lambda s: s.spec)
    for start in range(0, len(planned), 4):
        batch = planned[start : start + 4]
        assert len({s.function for s in batch}) == len(batch)
    assert len(planned) == 16 and all(len(planned[i : i + 4]) == 4 for i in range(0, 16, 4))


def test_sample_file_roundtrip():
    samples = [Sample("vfs_read+0x13", "boundary", "vmlinux:0xffffffff8134cc50"),
               Sample("xfs:xfs_foo+0x0", "module_entry", "xfs:0x1000", "a note"),
               Sample("0xffffffff81000000", "address", "vmlinux:0xffffffff81000000")]
    text = format_sample_file(samples, "header line")
    assert text.startswith("# header line\n")
    assert parse_sample_file(text) == samples
    plain = parse_sample_file("vfs_read  # ftrace\n\nvfs_read+0x5\n---\n")
    assert [(s.spec, s.category) for s in plain] == [("vfs_read", "-"), ("vfs_read+0x5", "-")]


def _kv(spec, registered=True, errno=None, optimized=False, ftrace=False, message=""):
    return KernelVerdict(spec, registered, errno, message, optimized, ftrace, False, None)


def test_compare_and_render():
    samples = [Sample("a+0x0", "entry", "vmlinux:a"), Sample("b+0x3", "boundary", "vmlinux:b"),
               Sample("c+0x1", "mid_insn", "vmlinux:c"), Sample("d+0x4", "boundary", "vmlinux:d")]
    kernel = [_kv("a+0x0", ftrace=True), _kv("b+0x3", optimized=True),
              _kv("c+0x1", False, "EILSEQ", message="write error"), _kv("d+0x4", False, "GUEST_CRASH")]
    predicted = [PredictedVerdict(True, None, False, True), PredictedVerdict(True, None, False, False),
                 PredictedVerdict(False, "EINVAL", False, False,
                                  [{"rule": "KP105", "severity": "error", "message": "notrace"}]),
                 PredictedVerdict(True, None, False, False)]
    comps = [compare_verdicts(s, "qemu64", k, p) for s, k, p in zip(samples, kernel, predicted, strict=True)]
    table = agreement(comps)
    assert table["TOTAL"]["probes"] == 4 and table["TOTAL"]["harness"] == 1
    assert table["TOTAL"]["registers"] == [3, 3]
    assert table["TOTAL"]["errno"] == [2, 3]
    assert table["TOTAL"]["optimized"] == [2, 3]
    assert table["boundary"]["ftrace"] == [1, 1]
    runs = [CpuRun("qemu64", comps)]
    text = render_text(runs, per_probe=True)
    assert "c+0x1  [mid_insn] fields: errno" in text and "KP105: notrace" in text
    assert "disagreements on optimized only: 1" in text and "not judged (harness): 1" in text
    data = to_json(runs, {"kernel_package": "k"})
    json.dumps(data)
    assert data["summary"]["qemu64"]["TOTAL"]["errno"] == [2, 3]
    assert [p["agree"]["errno"] for p in data["probes"]] == [True, True, False, False]
    assert [p["judged"] for p in data["probes"]] == [True, True, True, False]
    gone = _kv("a+0x0", ftrace=True)
    gone.gone = True  # kprobes/list's [GONE]: a pending probe on init text, killed once the module is live
    data = to_json([CpuRun("qemu64", [compare_verdicts(samples[0], "qemu64", gone, predicted[0])])], {})
    assert data["probes"][0]["kernel"]["gone"] is True
    assert runs_from_json(json.loads(json.dumps(data)))[0].comparisons[0].kernel.gone
    md = render_validation(runs, {"kernel_package": "k", "probe_count": 4, "source": "test", "date": "2024-01-01"})
    assert md.startswith("<!-- GENERATED") and "| `mid_insn` | EILSEQ | EINVAL (KP105) | 1 | `c+0x1` |" in md


MODULE = """
    .text
FUNC mod_fn
    FENTRY
    push %rbp
    mov %rsp, %rbp
    pop %rbp
    ret
    .section .modinfo
    .asciz "name=mymod"
"""


def test_a_module_the_guest_did_not_load_is_graded_pending(build_kernel):
    """insmod failed (aesni_intel without AES-NI): the kernel holds MOD:SYM probes pending, and
    probelint is asked about the kernel without that module (KP413), not the one it was given."""
    from probelint.vmtest.compare import load_failures, not_loaded, probelint_verdicts, unloaded_verdicts
    from probelint.vmtest.runner import BootInfo

    kernel = probelint.load_kernel([build_kernel(UNITS), build_kernel(MODULE, module=True)])
    specs = ["mymod:mod_fn+0x5", "mod_fn", "plain+0x4"]
    predicted = probelint_verdicts(kernel, specs)
    assert predicted[0].registers and predicted[0].optimized  # as if loaded
    boot = BootInfo([0, 1, 2], 1.0, True, False, modules={"mymod.ko": "ERR insmod: can't insert: No such device"},
                    module_log={"mymod.ko": ["[ 5.1] mymod: no device", "[ 5.1] trace_kprobe: x"]})
    assert load_failures([boot]) == {"mymod.ko": "insmod: can't insert: No such device | [ 5.1] mymod: no device"}
    graded = unloaded_verdicts(kernel, specs, predicted, not_loaded(kernel, [boot]))
    assert (graded[0].registers, graded[0].optimized) == (True, False)
    assert [f["rule"] for f in graded[0].findings] == ["KP413"]
    assert predicted[1].registers and graded[1].errno == "ENOENT"  # a plain name counted without the module
    assert graded[2] == predicted[2]
    ok = BootInfo([0, 1, 2], 1.0, True, False, modules={"mymod.ko": "OK"})
    assert unloaded_verdicts(kernel, specs, predicted, not_loaded(kernel, [ok])) == predicted


def test_pending_probes_of_a_module_whose_init_failed_are_killed(build_kernel):
    """Defined before the load, a MOD:SYM meets its module at MODULE_STATE_COMING even when the
    module's init then fails; kprobes_module_callback kills it at MODULE_STATE_GOING."""
    from probelint.vmtest.compare import killed_verdicts, probelint_verdicts

    kernel = probelint.load_kernel([build_kernel(UNITS), build_kernel(MODULE, module=True)])
    kernel.arrive(["mymod"])
    specs = ["mymod:mod_fn+0x5", "mymod:mod_fn", "plain+0x4"]
    predicted = probelint_verdicts(kernel, specs)
    assert predicted[0].optimized and predicted[1].ftrace
    killed = killed_verdicts(specs, predicted, {"mymod": "No such device"})
    assert [(v.registers, v.optimized, v.ftrace) for v in killed[:2]] == [(True, False, False)] * 2
    assert killed[2] == predicted[2]


def test_cli_dry_run(build_kernel, tmp_path, capsys):
    from probelint.cli import main

    vmlinux = build_kernel(UNITS)
    out = tmp_path / "sample.txt"
    assert main(["vmtest", "--vmlinux", str(vmlinux), "--sample", "30", "--seed", "2",
                 "--save-sample", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(parse_sample_file(out.read_text())) >= 20


# ------------------------------------------------------------------ the real kernel (QEMU)

# Measured on this sample (2026-11-27): registers 95.3% / 95.3%, errno 95.3% / 89.5%, ftrace 100% /
# 100% (qemu64 / EPYC-Rome); minus a margin.  Raise these as probelint's rules improve.
# `optimized` is printed, not asserted.
# The full runs agree on every probe (docs/validation.md); the margin absorbs an optimizer that
# has not settled on a loaded CI machine, not modelling errors.
CI_THRESHOLDS = {"registers": 0.995, "errno": 0.995, "ftrace": 0.995, "optimized": 0.98}
CI_CPUS = ("qemu64", "EPYC-Rome")


@pytest.mark.kernel
@pytest.mark.vm
def test_ci_sample_agreement(debian) -> None:
    """The fixed CI sample (vmlinux + xfs), one boot per CPU model; prints the agreement table."""
    from probelint.vmtest.compare import run_comparison
    from probelint.vmtest.download import HarnessUnavailable

    samples = parse_sample_file(CI_SAMPLE.read_text())
    assert 200 <= len(samples) <= 300
    kernel = probelint.load_kernel([debian.vmlinux, debian.xfs])
    try:
        runs = run_comparison(samples, kernel=kernel, cpus=CI_CPUS, modules=["xfs"], batch_size=len(samples))
    except HarnessUnavailable as exc:
        pytest.skip(f"kernel VM harness unavailable: {exc}")
    print(render_text(runs))
    for run in runs:
        total = agreement(run.comparisons)["TOTAL"]
        assert total["harness"] <= 2, f"{run.cpu}: guest crashed or probes not run"
        for field, minimum in CI_THRESHOLDS.items():
            agree, judged = total[field]
            assert agree / judged >= minimum, f"{run.cpu}: {field} agreement {agree}/{judged} below {minimum:.0%}"


SPECIAL = ["__switch_to%return", "do_sync_core+0x24", "xfs:init_xfs_fs", "vfs_read+4%return", "vfs_read+0x5%return",
           "xfs:exit_xfs_fs"]


@pytest.mark.kernel
@pytest.mark.vm
def test_rare_refusals_agree(debian) -> None:
    """Refusals the random sample rarely draws: kretprobe targets, call *mem, module init/exit text."""
    from probelint.vmtest.download import HarnessUnavailable
    from probelint.vmtest.runner import GuestBootError, run_probes

    kernel = probelint.load_kernel([debian.vmlinux, debian.xfs])
    try:
        booted = run_probes(SPECIAL, modules=["xfs"], cpu="qemu64")
    except (HarnessUnavailable, GuestBootError) as exc:
        pytest.skip(f"kernel VM harness unavailable: {exc}")
    predicted = probelint.check(kernel, SPECIAL)
    for spec, k, p in zip(SPECIAL, booted, predicted, strict=True):
        assert (k.registered, k.errno) == (p.verdict.registers, p.verdict.errno), (spec, k.message)


MODULE_SITES = """
    .text
FUNC mod_fn
    FENTRY
    push %rbp
    JUMP_LABEL 1f
    STATIC_CALL mod_fn
2:  call *pv_ops+8(%rip)
1:  pop %rbp
    ret
    .section .parainstructions, "a"
    .quad 2b
    .byte 3, 6
    .balign 16
    .section .init.text, "ax"
FUNC mod_init
    ret
    .section .exit.text, "ax"
FUNC mod_exit
    ret
    .text
LOCAL_FUNC shared_fn
    FENTRY
    ret
    .section .modinfo
    .asciz "name=mymod"
"""
OTHER_MODULE = """
    .text
LOCAL_FUNC shared_fn
    FENTRY
    ret
    .section .modinfo
    .asciz "name=othermod"
"""
MODULE_SITE_CATEGORIES = ["module_jump_label", "module_jump_label_inside", "module_static_call", "module_paravirt",
                          "module_init_text", "module_exit_text", "module_duplicate_name"]


def test_module_site_categories_are_drawn_when_named(build_kernel):
    """`vmtest --sample N --category module_jump_label ...` draws a module's own sites (the
    validation sample of docs/validation-modules.md); a default draw leaves them out."""
    kernel = probelint.load_kernel([build_kernel(UNITS), build_kernel(MODULE_SITES, module=True),
                                    build_kernel(OTHER_MODULE, module=True)])
    module = kernel.modules[0]
    samples = draw_sample(kernel, 14, seed=3, categories=MODULE_SITE_CATEGORIES)
    assert [s.spec for s in samples if s.category == "module_duplicate_name"] == ["shared_fn", "mymod:shared_fn"]
    by_cat = {s.category: s.spec for s in samples if s.category != "module_duplicate_name"}
    assert set(by_cat) == set(MODULE_SITE_CATEGORIES) - {"module_duplicate_name"}, by_cat
    jump = module.table("jump_table")[0]["code"]
    call = module.table("static_call_sites")[0]["addr"]
    paravirt = module.table("parainstructions")[0]["instr"]
    assert by_cat["module_jump_label"] == module.describe(jump)
    assert by_cat["module_static_call"] == module.describe(call)
    inside = module.lookup(jump).address + int(by_cat["module_jump_label_inside"].split("+")[1], 16)
    assert jump < inside < jump + 5
    at_pv = module.lookup(paravirt).address + int(by_cat["module_paravirt"].split("+")[1], 16)
    assert paravirt <= at_pv < paravirt + 6
    assert by_cat["module_init_text"] == "mymod:mod_init" and by_cat["module_exit_text"] == "mymod:mod_exit"
    assert not any(s.category in MODULE_SITE_CATEGORIES for s in draw_sample(kernel, 60, seed=3))
