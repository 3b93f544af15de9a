"""x86-64 instruction decoding as the kernel's own decoder (arch/x86/lib/insn.c) sees it.

The kernel walks a function linearly from its kallsyms start with `insn_decode_kernel()`
(arch/x86/kernel/kprobes/core.c `can_probe`), so an offset is a valid probe point exactly when
that walk lands on it. We decode with iced-x86 and fix up the few places where the kernel's
table-driven length decoder disagrees (measured over every function of the Debian 6.1 vmlinux,
see docs/decoder.md and scripts/compare_decoder.py):

* Xen/KVM "emulate prefixes" (``ud2; .ascii "xen"`` / ``"kvm"``) are folded by the kernel into
  the instruction that follows them (`insn_get_emulate_prefix`);
* opcodes invalid in 64-bit mode (``ljmp``/``lcall ptr16:32`` in 32-bit boot code, ``push %es``...)
  are still sized by the kernel from its opcode map, which ignores the ``(i64)`` marker;
* ``0f ff`` (UD0) has no ModRM byte in the kernel's opcode map.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import iced_x86

__all__ = [
    "JMP32_INSN_SIZE",
    "MAX_INSN_SIZE",
    "MAX_OPTIMIZED_LENGTH",
    "MCOUNT_INSN_SIZE",
    "Insn",
    "decode",
    "format_insn",
]

MAX_INSN_SIZE = 15  # arch/x86/include/asm/insn.h
JMP32_INSN_SIZE = 5  # arch/x86/include/asm/text-patching.h
MCOUNT_INSN_SIZE = 5  # arch/x86/include/asm/ftrace.h: the fentry call site
MAX_OPTIMIZED_LENGTH = MAX_INSN_SIZE + 4  # + DISP32_SIZE, arch/x86/include/asm/kprobes.h

XEN_EMULATE_PREFIX = b"\x0f\x0b" + b"xen"  # arch/x86/include/asm/emulate_prefix.h
KVM_EMULATE_PREFIX = b"\x0f\x0b" + b"kvm"

_LEGACY_PREFIXES = frozenset(b"\x26\x2e\x36\x3e\x64\x65\x66\x67\xf0\xf2\xf3")
# One-byte opcodes marked (i64) in x86-opcode-map.txt that take no operand bytes: the kernel
# sizes them as the bare opcode, iced reports them invalid in 64-bit mode.
_I64_BARE_OPCODES = frozenset(b"\x06\x07\x0e\x16\x17\x1e\x1f\x27\x2f\x37\x3f\x60\x61\xce\xd6")
_I64_IMM8_OPCODES = frozenset(b"\xd4\xd5")  # AAM/AAD Ib
_I64_FAR_PTR_OPCODES = frozenset(b"\x9a\xea")  # CALLF/JMP-far Ap: ptr16:16 or ptr16:32


@dataclass(frozen=True, slots=True)
class Insn:
    """One instruction as the kernel's decoder delimits it.

    `decoded` is iced's view of the instruction proper (after any emulate prefix); it is None
    when the kernel's length came from a fix-up or the bytes are undecodable (`valid` False).
    """

    address: int
    length: int
    raw: bytes
    decoded: iced_x86.Instruction | None
    emulate_prefix: bool = False
    valid: bool = True

    @property
    def end(self) -> int:
        return self.address + self.length


def _legacy_prefix_count(code: bytes, pos: int) -> int:
    n = 0
    while pos + n < len(code) and code[pos + n] in _LEGACY_PREFIXES and n < MAX_INSN_SIZE:
        n += 1
    # A REX prefix (40-4f) directly before the opcode is a prefix too in 64-bit mode.
    if pos + n < len(code) and 0x40 <= code[pos + n] <= 0x4F:
        n += 1
    return n


def _kernel_only_length(code: bytes, pos: int) -> int | None:
    """Length the kernel gives bytes that iced rejects, or None if the kernel rejects them too."""
    npfx = _legacy_prefix_count(code, pos)
    if pos + npfx >= len(code):
        return None
    op = code[pos + npfx]
    prefixes = code[pos : pos + npfx]
    if op in _I64_BARE_OPCODES:
        length = npfx + 1
    elif op in _I64_IMM8_OPCODES:
        length = npfx + 2
    elif op in _I64_FAR_PTR_OPCODES:
        length = npfx + 1 + (2 if 0x66 in prefixes else 4) + 2
    elif op == 0x0F and pos + npfx + 1 < len(code) and code[pos + npfx + 1] == 0xFF:
        length = npfx + 2  # UD0: no ModRM in the kernel's opcode map
    else:
        return None
    return length if length <= MAX_INSN_SIZE and pos + length <= len(code) else None


def _decode_at(decoder: iced_x86.Decoder, code: bytes, pos: int, address: int) -> Insn:
    """Decode one instruction at `pos` (the decoder is positioned there already)."""
    emulate = code.startswith(XEN_EMULATE_PREFIX, pos) or code.startswith(KVM_EMULATE_PREFIX, pos)
    inner = pos + len(XEN_EMULATE_PREFIX) if emulate else pos
    if emulate:
        decoder.position = inner
        decoder.ip = address + inner
    instr = decoder.decode()
    # iced sizes UD0 with a ModRM byte; the kernel does not.
    invalid = instr.code == iced_x86.Code.INVALID or instr.mnemonic == iced_x86.Mnemonic.UD0
    if not invalid:
        length = inner - pos + instr.len
        if length <= MAX_INSN_SIZE:
            return Insn(address + pos, length, code[pos : pos + length], instr, emulate)
    fixed = _kernel_only_length(code, inner)
    if fixed is not None:
        length = inner - pos + fixed
        return Insn(address + pos, length, code[pos : pos + length], None, emulate)
    return Insn(address + pos, 1, code[pos : pos + 1], None, emulate, valid=False)


def decode(code: bytes, address: int, *, stop_at_invalid: bool = True) -> Iterator[Insn]:
    """Walk `code` (located at `address`) instruction by instruction, as `can_probe` does.

    The walk ends at the end of `code`, or after the first undecodable instruction when
    `stop_at_invalid` (the kernel gives up there; that instruction is yielded with
    ``valid=False``). An instruction that would run past the end of `code` is undecodable,
    exactly as `insn_decode` fails when its buffer runs out.
    """
    decoder = iced_x86.Decoder(64, code, ip=address, options=iced_x86.DecoderOptions.NO_INVALID_CHECK)
    pos = 0
    while pos < len(code):
        if decoder.position != pos:
            decoder.position = pos
            decoder.ip = address + pos
        insn = _decode_at(decoder, code, pos, address)
        yield insn
        if not insn.valid and stop_at_invalid:
            return
        pos += insn.length


@cache
def _formatter() -> iced_x86.Formatter:
    fmt = iced_x86.Formatter(iced_x86.FormatterSyntax.GAS)
    fmt.uppercase_hex = False
    fmt.space_after_operand_separator = True
    return fmt


def format_insn(insn: Insn) -> str:
    """AT&T text of an instruction, as objdump and kernel people read it."""
    if not insn.valid:
        return "(bad)"
    text = _formatter().format(insn.decoded) if insn.decoded is not None else f".byte {insn.raw.hex(' ')}"
    return f"{'xen/kvm emulate prefix; ' if insn.emulate_prefix else ''}{text}"
