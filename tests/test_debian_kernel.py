"""Integration tests on the real Debian vmlinux and xfs.ko (downloaded once, then cached).

Every expectation is derived from the real bytes or from binutils/System.map, never typed in.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter

import pytest

import probelint
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
    nxt = {a: b for a, b in zip(addresses, addresses[1:], strict=False)}
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


@pytest.mark.parametrize("name", FUNCTIONS)
def test_boundaries_agree_with_objdump(debian, debian_kernel: Kernel, name):
    vmlinux = debian_kernel.vmlinux
    sym = vmlinux.symbols.lookup_name(name)
    starts = set(objdump_starts(debian.vmlinux, sym.address, sym.end))
    offsets = range(5, min(sym.size, 0x120))  # +0 is the ftrace site
    results = probelint.check(debian_kernel, [f"{name}+{off:#x}" for off in offsets])
    for off, result in zip(offsets, results, strict=True):
        on_boundary = sym.address + off in starts
        assert result.verdict.registers == on_boundary, (name, hex(off), result.findings)
        assert result.verdict.errno == (None if on_boundary else "EILSEQ")


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
