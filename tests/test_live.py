"""--live: the running kernel from /proc and debugfs, on fixture files under --live-root (this
machine has no /proc/kcore nor kprobes): a kcore ELF core file holding the demo kernel's text
KASLR-slid, its kallsyms, a kprobes/list and blacklist."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

import probelint
from probelint.arch.x86.cpu import DEFAULT_PROFILE
from probelint.arch.x86.patching import patch_live_text
from probelint.errors import InputError
from probelint.image.kernel import open_image
from tests.test_boot_inputs import DEMO, ROOT, SLIDE, bzimage, compressed, kallsyms_dump, stripped, system_map

RELEASE = "9.9.9-demo"


def kcore(segments: list[tuple[int, bytes]]) -> bytes:
    """An ELF64 core file (fs/proc/kcore.c): a PT_LOAD per (virtual address, bytes)."""
    phoff, phentsize = 64, 56
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HHIQQQIHHHHHH", header, 16, 4, 62, 1, 0, phoff, 0, 0, 64, phentsize, len(segments), 0, 0, 0)
    offset = phoff + phentsize * len(segments)
    table, body = b"", b""
    for vaddr, data in segments:
        table += struct.pack("<IIQQQQQQ", 1, 7, offset + len(body), vaddr, 0, len(data), len(data), 0x1000)
        body += data
    return bytes(header) + table + body


def model_text() -> tuple[int, bytearray]:
    """The demo's .text as the CPU-profile model says the running kernel holds it."""
    image = open_image(DEMO / "demo.elf")
    text = image.elf.section(".text")
    assert text is not None
    return text.address, bytearray(patch_live_text(image, text.address, image.read(text.address, text.size),
                                                   DEFAULT_PROFILE))


def address(name: str) -> int:
    sym = open_image(DEMO / "demo.elf").symbols.lookup_name(name)
    assert sym is not None
    return sym.address


@pytest.fixture
def live_root(tmp_path: Path) -> Path:
    """A running demo kernel booted SLIDE bytes up, with nothing registered."""
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"vmlinuz-{RELEASE}").write_bytes(bzimage(compressed(stripped(tmp_path), "gzip")))
    (root / "proc" / "sys" / "kernel").mkdir(parents=True)
    (root / "proc" / "sys" / "kernel" / "osrelease").write_text(RELEASE + "\n")
    # x86-64 lists the per-CPU symbols first, the first at 0 whoever reads it
    (root / "proc" / "kallsyms").write_text(f"{0:016x} A fixed_percpu_data\n"
                                           + kallsyms_dump(system_map(DEMO / "demo.elf"), SLIDE))
    (root / "proc" / "modules").write_text("")
    write_kcore(root)
    (root / "sys" / "kernel" / "debug" / "kprobes").mkdir(parents=True)
    registered(root, "")
    # the blacklist as the booted kernel lists it: the image's own, slid
    image = open_image(DEMO / "demo.elf")
    blacklisted(root, "".join(f"0x{s + SLIDE:016x}-0x{e + SLIDE:016x}\t{image.describe(s).split('+')[0]}\n"
                              for s, e, _ in image.blacklist.ranges))
    return root


def write_kcore(root: Path, patches: dict[int, bytes] | None = None) -> None:
    start, text = model_text()
    for at, data in (patches or {}).items():
        text[at - start : at - start + len(data)] = data
    (root / "proc" / "kcore").write_bytes(kcore([(0xFFFF888000000000, bytes(64)), (start + SLIDE, bytes(text))]))


def registered(root: Path, text: str) -> None:
    (root / "sys" / "kernel" / "debug" / "kprobes" / "list").write_text(text)


def blacklisted(root: Path, text: str) -> None:
    (root / "sys" / "kernel" / "debug" / "kprobes" / "blacklist").write_text(text)


def check(root: Path, probes: list[str]) -> list:
    return list(probelint.check([], probes, live=True, live_root=root, hints="never", cache=False))


def summary(results: list) -> list[tuple]:
    return [(r.verdict.registers, r.verdict.optimized, sorted(f.rule for f in r.findings)) for r in results]


def demo_probes() -> list[str]:
    lines = [line.split("#")[0].strip() for line in (DEMO / "probes.txt").read_text().splitlines()]
    return [p for p in lines if p]


def test_live_text_as_the_model_gives_the_image_verdicts(live_root):
    expected = probelint.check([DEMO / "demo.elf"], demo_probes(), hints="never", cache=False)
    assert summary(check(live_root, demo_probes())) == summary(list(expected))


def test_text_is_read_from_kcore(live_root):
    # the 3-byte instruction at demo_read+0x6 is three NOPs in the running kernel: +0x8 is a boundary
    assert summary(check(live_root, ["demo_read+0x8"]))[0][0] is False
    write_kcore(live_root, {address("demo_read") + 6: b"\x90\x90\x90"})
    assert summary(check(live_root, ["demo_read+0x8"]))[0][0] is True


def test_new_probe_inside_a_registered_optimized_probe(live_root):
    base = address("demo_read") + SLIDE
    registered(live_root, f"{base + 5:016x}  k  demo_read+0x5    [OPTIMIZED]\n")
    # the optimized probe's jump is in the live text: the original bytes are decoded
    write_kcore(live_root, {base - SLIDE + 5: b"\xe9\x00\x10\x00\x00"})
    result = check(live_root, ["demo_read+0x9"])[0]
    assert result.verdict.registers
    [finding] = [f for f in result.findings if f.rule == "KP302"]
    assert "demo_read+0x5" in finding.message and "kprobes/list:1" in finding.message
    # the same probe left an int3 probe (debug.kprobes-optimization off...): the list says so
    registered(live_root, f"{base + 5:016x}  k  demo_read+0x5    \n")
    write_kcore(live_root, {base - SLIDE + 5: b"\xcc"})
    assert summary(check(live_root, ["demo_read+0x9"])) == [(True, True, [])]


def test_new_probe_whose_window_covers_a_registered_probe(live_root):
    assert summary(check(live_root, ["demo_read+0x5"])) == [(True, True, [])]
    base = address("demo_read") + SLIDE
    registered(live_root, f"{base + 9:016x}  k  demo_read+0x9    \n")
    write_kcore(live_root, {base - SLIDE + 9: b"\xcc"})
    result = check(live_root, ["demo_read+0x5"])[0]
    assert (result.verdict.registers, result.verdict.optimized) == (True, False)
    assert any(f.rule == "KP301" and "kprobes/list:1" in f.message for f in result.findings)
    # a disabled probe is disarmed (its byte put back): it blocks nothing
    registered(live_root, f"{base + 9:016x}  k  demo_read+0x9    [DISABLED]\n")
    write_kcore(live_root)
    assert summary(check(live_root, ["demo_read+0x5"])) == [(True, True, [])]


def test_blacklist_from_debugfs(live_root):
    start = address("demo_write") + SLIDE
    blacklisted(live_root, f"0x{start:016x}-0x{start + 0x10:016x}\tdemo_write\n")
    result = check(live_root, ["demo_write+0x5"])[0]
    assert result.verdict.registers is False and any(f.rule == "KP106" for f in result.findings)


def test_what_is_missing_is_one_line(live_root, tmp_path):
    (live_root / "proc" / "kcore").unlink()
    (live_root / "sys" / "kernel" / "debug" / "kprobes" / "list").unlink()
    with pytest.raises(InputError, match=r"no .*proc/kcore.*; no .*kprobes/list and blacklist \(run as root\)"):
        check(live_root, ["demo_read"])
    hidden = tmp_path / "hidden"
    (hidden / "proc").mkdir(parents=True)
    (hidden / "proc" / "kallsyms").write_text(f"{0:016x} T _text\n")
    proc = subprocess.run([sys.executable, "-m", "probelint", "--live", "--live-root", str(hidden), "-"],
                          input="demo_read\n", capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "kptr_restrict hides them: run as root" in proc.stderr and "mount debugfs" in proc.stderr


def test_blacklist_lines_as_the_kernel_prints_them():
    """kprobe_blacklist_seq_show prints "0x%px-0x%px\\t%ps": a module's symbol as "SYM [MOD]"
    (its entries belong to the module's image, not the vmlinux's)."""
    from probelint.live import parse_blacklist

    text = ("0xffffffff81001000-0xffffffff81001040\tdo_int3\n"
            "0xffffffffc0a01000-0xffffffffc0a01020\tkvm_spurious_fault [kvm]\n")
    assert parse_blacklist(text, "blacklist") == [(0xFFFFFFFF81001000, 0xFFFFFFFF81001040, "do_int3")]


def test_a_loaded_module_symbol_of_the_same_name_makes_it_not_unique(live_root):
    """6.1.y's number_of_same_symbols counts the loaded modules' kallsyms too (trace_kprobe.c):
    a name the vmlinux has once is refused when a loaded module has it as well."""
    assert summary(check(live_root, ["demo_read"]))[0][0] is True
    kallsyms = live_root / "proc" / "kallsyms"
    kallsyms.write_text(kallsyms.read_text() + "ffffffffc0201000 t demo_read\t[virtio_ring]\n"
                        + "ffffffffc0201100 t other_read\t[virtio_ring]\n")
    [result] = check(live_root, ["demo_read"])
    assert (result.verdict.registers, result.verdict.errno) == (False, "EADDRNOTAVAIL")
    [finding] = [f for f in result.findings if f.rule == "KP102"]
    assert "1 in loaded module virtio_ring" in finding.message
    assert check(live_root, ["demo_write"])[0].verdict.registers


def test_a_module_the_running_kernel_has_not_loaded_is_held_pending(live_root):
    """kprobe_events holds a MOD:SYM of a module /proc/modules does not list pending (KP413); with
    --live that is known, where a run on an image alone can only say it was not checked (KP402)."""
    [result] = check(live_root, ["xfs:xfs_file_read_iter+0x5"])
    assert result.verdict.registers is True and not result.verdict.optimized
    assert [f.rule for f in result.findings] == ["KP413"]
    (live_root / "proc" / "modules").write_text("xfs 1 0 - Live 0xffffffffc0300000\n")
    [result] = check(live_root, ["xfs:xfs_file_read_iter+0x5"])  # loaded: its .ko is wanted to check it
    assert result.verdict.registers is None and [f.rule for f in result.findings] == ["KP402"]


# A module as kbuild links it (no imports but __fentry__), loaded by the running kernel at MOD_BASE:
# not where probelint would lay it out on its own (MODULE_BASE)
LIVE_MODULE = """
    .text
FUNC mod_read
    FENTRY
    push %rbp
    mov %rsp, %rbp
    add $1, %edi
    call mod_helper
    pop %rbp
    ret
LOCAL_FUNC mod_helper
    FENTRY
    lea 1(%rdi), %eax
    imul $7, %eax, %eax
    ret
"""
MOD_BASE = 0xFFFFFFFFC0123000


@pytest.fixture
def loaded_module(live_root, build_kernel):
    """`demomod` installed under lib/modules/RELEASE (compressed, as Debian 7.x installs them) and
    loaded at MOD_BASE: /proc/modules, its [demomod] kallsyms, its text in kcore. Returns a
    function writing kcore with the module's text patched at (address: bytes)."""
    import lzma

    from probelint.image.elf import ElfFile
    from probelint.image.module import Module

    tree = live_root / "lib" / "modules" / RELEASE / "kernel" / "drivers"
    tree.mkdir(parents=True)
    ko = tree / "demomod.ko"
    subprocess.run(["ld", "-r", "--build-id=sha1", "-o", ko, build_kernel(LIVE_MODULE, module=True)], check=True)
    module = Module(ElfFile(ko), DEFAULT_PROFILE, None, MOD_BASE)
    (tree / "demomod.ko.xz").write_bytes(lzma.compress(ko.read_bytes(), lzma.FORMAT_XZ))
    ko.unlink()
    (live_root / "proc" / "modules").write_text(f"demomod 16384 0 - Live {MOD_BASE:#x}\n")
    kallsyms = live_root / "proc" / "kallsyms"
    kallsyms.write_text(kallsyms.read_text() + "".join(
        f"{module.symbols.lookup_name(n).address:016x} {t} {n}\t[demomod]\n"
        for n, t in (("mod_read", "T"), ("mod_helper", "t"))))
    start, end = module.layout.text_start, module.layout.text_end
    text = patch_live_text(module, start, module.read(start, end - start), DEFAULT_PROFILE)

    def write(patches: dict[int, bytes] | None = None) -> None:
        live = bytearray(text)
        for at, data in (patches or {}).items():
            live[at - start : at - start + len(data)] = data
        _, vmlinux_text = model_text()
        (live_root / "proc" / "kcore").write_bytes(kcore([(model_text()[0] + SLIDE, bytes(vmlinux_text)),
                                                         (0xFFFFFFFFC0000000, bytes(start - 0xFFFFFFFFC0000000)
                                                          + bytes(live))]))

    write()
    write.module = module  # type: ignore[attr-defined]
    return write


def test_a_loaded_module_is_checked_where_the_running_kernel_loaded_it(live_root, loaded_module):
    """MOD:SYM on a loaded module: its .ko from the tree, laid out from /proc/modules' address,
    its text read from kcore there (a 3-byte instruction made NOPs makes its middle a boundary)."""
    at = loaded_module.module.symbols.lookup_name("mod_read").address
    assert summary(check(live_root, ["demomod:mod_read+0x5"])) == [(True, True, [])]
    assert summary(check(live_root, ["demomod:mod_read+0x7"]))[0][0] is False
    loaded_module({at + 6: b"\x90\x90\x90"})
    assert summary(check(live_root, ["demomod:mod_read+0x7"]))[0][0] is True


def test_a_plain_symbol_only_a_loaded_module_has_is_resolved_there(live_root, loaded_module):
    """kallsyms_lookup_name falls back to the modules (module_kallsyms_lookup_name)."""
    [result] = check(live_root, ["mod_helper+0x5"])
    assert result.verdict.registers is True and not result.findings
    assert result.context.image.name == "demomod"
    assert result.context.address == loaded_module.module.symbols.lookup_name("mod_helper").address + 5


def test_a_module_probe_already_registered_is_taken_out_of_its_live_text(live_root, loaded_module):
    at = loaded_module.module.symbols.lookup_name("mod_read").address
    registered(live_root, f"{at + 5:016x}  k  mod_read+0x5  [demomod]  [OPTIMIZED]\n")
    loaded_module({at + 5: b"\xe9\x00\x10\x00\x00"})
    # the jump spans +0x5..+0xa: +0x9 is a boundary of the original bytes only
    [result] = check(live_root, ["demomod:mod_read+0x9"])
    assert result.verdict.registers is True
    assert any(f.rule == "KP302" and "demomod:mod_read+0x5" in f.message for f in result.findings)


def test_a_module_laid_out_elsewhere_than_kallsyms_says_is_an_input_error(live_root, loaded_module):
    (live_root / "proc" / "modules").write_text(f"demomod 16384 0 - Live {MOD_BASE + 0x1000:#x}\n")
    with pytest.raises(InputError, match=r"demomod:mod_read is at .* puts it at"):
        check(live_root, ["demomod:mod_read+0x5"])
