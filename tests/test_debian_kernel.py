"""Integration tests on the real Debian vmlinux and xfs.ko (downloaded once, then cached).

Every expectation is derived from the real bytes or from binutils/System.map, never typed in.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from collections import Counter

import pytest

import probelint
from probelint.arch.x86.cpu import CpuProfile
from probelint.arch.x86.patching import patch_live_text
from probelint.image.kernel import Kernel

pytestmark = pytest.mark.kernel

FUNCTIONS = ("vfs_read", "do_sys_openat2", "schedule", "kmem_cache_alloc", "tcp_sendmsg")


def system_map(path) -> list[tuple[int, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        addr, kind, name = line.split()[:3]
        out.append((int(addr, 16), kind, name))
    return out


def objdump_starts(path, start: int, stop: int, section: str | None = None) -> list[int]:
    """Instruction addresses objdump prints for [start, stop)."""
    cmd = ["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}", f"--stop-address={stop:#x}"]
    if section:
        cmd += ["-j", section]
    text = subprocess.run([*cmd, str(path)], capture_output=True, text=True, check=True).stdout
    return [int(m.group(1), 16) for m in re.finditer(r"^\s*([0-9a-f]+):\s", text, re.M)]


def test_vfs_read_resolves_to_its_system_map_address(debian, debian_kernel: Kernel):
    sm = {name: addr for addr, _, name in system_map(debian.system_map)}
    (result,) = probelint.check(debian_kernel, ["vfs_read"])
    assert result.context.address == sm["vfs_read"]
    assert result.verdict.registers and result.verdict.ftrace  # fentry site at +0


def test_kallsyms_sizes_match_system_map_spacing(debian, debian_kernel: Kernel):
    entries = system_map(debian.system_map)
    vmlinux = debian_kernel.vmlinux
    stext, etext = vmlinux.marker("_stext"), vmlinux.marker("_etext")
    addresses = sorted({a for a, _, _ in entries})
    nxt = dict(itertools.pairwise(addresses))
    checked = 0
    for addr, kind, name in entries:
        if kind in "tT" and stext <= addr < etext and addr in nxt:
            sym = vmlinux.symbols.lookup(addr)
            assert sym.size == nxt[addr] - addr, name
            checked += 1
    assert checked > 40_000


def test_every_kallsyms_name_and_alias_order(debian, debian_kernel: Kernel):
    # The kernel keeps everything System.map lists except kallsyms' own tables and absolutes.
    ours = Counter(debian_kernel.vmlinux.symbols.names)
    tables = {"kallsyms_offsets", "kallsyms_relative_base", "kallsyms_num_syms", "kallsyms_names", "kallsyms_markers",
              "kallsyms_token_table", "kallsyms_token_index", "kallsyms_seqs_of_names"}
    theirs = Counter(n for _, k, n in system_map(debian.system_map) if k not in "aA" and n not in tables)
    assert ours == theirs


@pytest.fixture(scope="module")
def elf_bytes_kernel(debian_kernel: Kernel) -> Kernel:
    """The kernel judged on unpatched return sites (`rethunk` leaves the ELF's jmp in place; its
    alternatives are applied, so the test skips the sites they change)."""
    return debian_kernel.with_profile(CpuProfile.RETHUNK)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_boundaries_agree_with_objdump(debian, elf_bytes_kernel: Kernel, name):
    debian_kernel = elf_bytes_kernel
    vmlinux = debian_kernel.vmlinux
    sym = vmlinux.symbols.lookup_name(name)
    starts = set(objdump_starts(debian.vmlinux, sym.address, sym.end))
    offsets = range(5, min(sym.size, 0x120))  # +0 is the ftrace site
    results = probelint.check(debian_kernel, [f"{name}+{off:#x}" for off in offsets])
    elf = vmlinux.read(sym.address, sym.size)
    live = patch_live_text(vmlinux, sym.address, elf, CpuProfile.RETHUNK)
    changed = {sym.address + i for i in range(sym.size) if elf[i] != live[i]}
    altered = {a for e in vmlinux.table("alt_instructions") if sym.address <= e["instr"] < sym.end
               and changed & set(range(e["instr"], e["instr"] + e["instrlen"]))
               for a in range(e["instr"], e["instr"] + e["instrlen"])}  # objdump shows the ELF's bytes there
    for off, result in zip(offsets, results, strict=True):
        if sym.address + off in altered:
            continue
        on_boundary = sym.address + off in starts
        fired = [f.rule for f in result.findings]
        assert ("KP104" in fired) == (not on_boundary) or "KP107" in fired or "KP108" in fired, (name, hex(off))
        if not on_boundary:  # EILSEQ, or EINVAL when a patched site is tested first (as the kernel does)
            assert result.verdict.errno in ("EILSEQ", "EINVAL")


def test_return_sites_become_int3_with_the_ret_profile(debian_kernel: Kernel):
    # qemu64 boots patch `jmp __x86_return_thunk` to `ret; int3 x4`: bytes 1..4 are int3
    # instructions, refused with EINVAL (observed on the booted kernel), not EILSEQ.
    vmlinux = debian_kernel.vmlinux
    sym = vmlinux.symbols.lookup_name("vfs_read")
    site = next(a for a in vmlinux.return_sites if sym.address <= a < sym.end)
    off = site - sym.address
    results = probelint.check(debian_kernel, [f"vfs_read+{off + i:#x}" for i in range(5)])
    assert results[0].verdict.registers and not results[0].verdict.optimized  # window runs into int3
    assert all(r.verdict.errno == "EINVAL" and r.findings[0].rule == "KP110" for r in results[1:])


def test_front_end_refusals(debian, debian_kernel: Kernel):
    names = Counter(n for _, k, n in system_map(debian.system_map) if k in "tT")
    duplicate = next(n for n, c in sorted(names.items()) if c > 1 and "." not in n)
    dup, notrace, nokprobe, data = probelint.check(debian_kernel, [duplicate, "memcpy", "do_int3", "jiffies"])
    assert dup.verdict.errno == "EADDRNOTAVAIL"
    assert notrace.verdict.errno == "EINVAL" and notrace.findings[0].rule == "KP105"
    assert nokprobe.verdict.errno == "EINVAL" and nokprobe.findings[0].rule == "KP106"
    assert data.verdict.errno == "EINVAL"


def test_module_symbols_and_boundaries(debian):
    kernel = probelint.load_kernel([debian.vmlinux, debian.xfs])
    xfs = kernel.module("xfs")
    sym = xfs.symbols.lookup_name("xfs_buf_read_map")
    text = xfs.elf.section(".text")
    base = xfs.section_address(text)
    rel = sym.address - base
    starts = {base + a for a in objdump_starts(debian.xfs, rel, rel + sym.size, ".text")}
    offsets = range(5, min(sym.size, 0x80))
    results = probelint.check(kernel, [f"xfs:xfs_buf_read_map+{off:#x}" for off in offsets])
    for off, result in zip(offsets, results, strict=True):
        assert result.verdict.registers == (sym.address + off in starts), hex(off)
        assert result.context.image is xfs and result.context.symbol.name == "xfs_buf_read_map"
    (entry,) = probelint.check(kernel, ["xfs:xfs_buf_read_map"])
    assert entry.verdict.ftrace  # module __mcount_loc, resolved through its relocations
    (init,) = probelint.check(kernel, ["xfs:init_xfs_fs"])
    assert init.verdict.errno == "ENOENT"
