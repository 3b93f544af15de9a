"""changes.py "alt-jmp-int3-pad": a replacement's `jmp rel32` that fits in 8 bits is written as `jmp rel8`
followed by int3s from 6.5 (__apply_relocation), by NOPs before (recompute_jump). Checked on the booted
7.3-rc7 cloud kernel: fpu__clear_user_states+0x63, two bytes into a static_cpu_has() site, is EILSEQ."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from probelint.arch.x86.patching import _NOPS, _alternative
from probelint.image.kversion import parse_version

SITE = 0xFFFFFFFF81000010
REPL = 0xFFFFFFFF83000000
TARGET = SITE + 0x20  # the jump's destination: 0x1e past the short jmp


class _Image:
    is_module = False

    def __init__(self, version: str, symbols: dict[str, int]) -> None:
        self.config = SimpleNamespace(version=parse_version(version))
        self.vmlinux = self
        self._symbols = {"register_kprobe": 0xFFFFFFFF81100000, **symbols}
        rel = (TARGET - (REPL + 5)) & 0xFFFFFFFF
        self._memory = {REPL: b"\xe9" + rel.to_bytes(4, "little"), SITE: b"\xe9\x00\x00\x00\x00\x90\x90"}

    def raw_symbol(self, name: str) -> int | None:
        return self._symbols.get(name)

    def read(self, address: int, size: int) -> bytes:
        return self._memory.get(address, b"")[:size]


@pytest.mark.parametrize(("symbols", "expected"), [
    ({"__apply_relocation": 0xFFFFFFFF8104A5F0}, "eb1ecccccc6690"),  # 6.12 .. 7.3: int3 after the jmp8
    ({}, "eb1e0f1f440000"),  # 5.10, 6.1: recompute_jump's NOPs
])
def test_short_jmp_padding(symbols: dict[str, int], expected: str) -> None:
    entry = {"instr": SITE, "instrlen": 7, "cpuid": 3 * 32 + 21, "replacementlen": 5, "repl": REPL}
    image = _Image("7.3.0" if symbols else "6.1.192", symbols)
    out = _alternative(image, entry, frozenset({3 * 32 + 21}), image.read(SITE, 7), _NOPS)
    assert out.hex() == expected
