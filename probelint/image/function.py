"""A function as `can_probe`/`can_optimize` walk it: instruction boundaries, branches and
indirect jumps from its decode facts, instructions decoded from the live text when read."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from functools import cached_property
from itertools import accumulate
from typing import overload

from probelint.arch.x86 import decode as x86
from probelint.image.facts import FunctionFacts
from probelint.image.kallsyms import KSym

__all__ = ["Function", "LazyInsns"]


class LazyInsns(Sequence[x86.Insn]):
    """A function's instructions at known starts, each decoded the first time it is read."""

    def __init__(self, code: bytes, address: int, starts: list[int]) -> None:
        self._code, self._address, self._starts = code, address, starts
        self._decoded: dict[int, x86.Insn] = {}
        self._decoder: x86.Decoder | None = None

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> x86.Insn: ...
    @overload
    def __getitem__(self, index: slice) -> list[x86.Insn]: ...

    def __getitem__(self, index: int | slice) -> x86.Insn | list[x86.Insn]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self._starts)))]
        if index < 0:
            index += len(self._starts)
        insn = self._decoded.get(index)
        if insn is None:
            if not 0 <= index < len(self._starts):
                raise IndexError(index)
            if self._decoder is None:
                self._decoder = x86.decoder(self._code, self._address)
            insn = self._decoded[index] = x86.decode_at(self._decoder, self._code, self._starts[index] - self._address,
                                                       self._address)
        return insn


class Function:
    """A kallsyms symbol decoded linearly from its start, as `can_probe`/`can_optimize` walk it.

    Built from `FunctionFacts` (cached per build-id) and the live bytes: the boundaries, branch
    targets and indirect jumps come from the facts, instructions are decoded when read."""

    def __init__(self, symbol: KSym, facts: FunctionFacts, code: bytes,
                 insns: Sequence[x86.Insn] | None = None) -> None:
        self.symbol = symbol
        self.facts = facts
        self.starts: list[int] = list(accumulate(facts.lengths[:-1], initial=symbol.address)) if facts.lengths else []
        self.insns: Sequence[x86.Insn] = insns if insns is not None else LazyInsns(code, symbol.address, self.starts)

    def is_boundary(self, address: int) -> bool:
        pos = bisect.bisect_left(self.starts, address)
        return pos < len(self.starts) and self.starts[pos] == address

    def insn_at_or_before(self, address: int) -> x86.Insn | None:
        pos = bisect.bisect_right(self.starts, address) - 1
        return self.insns[pos] if pos >= 0 else None

    def insn_after(self, address: int) -> x86.Insn | None:
        pos = bisect.bisect_right(self.starts, address)
        return self.insns[pos] if pos < len(self.insns) else None

    @cached_property
    def branches(self) -> list[tuple[int, x86.Insn]]:
        """(target, insn) of every jmp/jcc/loop/jcxz (`insn_jump_into_range` kinds), by target."""
        facts = self.facts
        return [(target, self.insns[k]) for target, k in zip(facts.branch_targets, facts.branch_insns, strict=True)]

    def branch_into(self, lo: int, hi: int) -> tuple[int, x86.Insn] | None:
        """The first branch (lowest target) with lo <= target <= hi."""
        targets = self.facts.branch_targets
        pos = bisect.bisect_left(targets, lo)
        if pos < len(targets) and targets[pos] <= hi:
            return targets[pos], self.insns[self.facts.branch_insns[pos]]
        return None

    def branch_into_window(self, probe: int) -> tuple[int, x86.Insn] | None:
        """The first branch into P+1..P+5, the bytes an optprobe's jump at `probe` (P) overwrites
        (opt.c `can_optimize`: insn_jump_into_range(insn, P + 1, 4) is inclusive at both ends)."""
        return self.branch_into(probe + 1, probe + x86.JMP32_INSN_SIZE)

    def first_in(self, addresses: list[int]) -> x86.Insn | None:
        """The first instruction whose address is in sorted `addresses` (e.g. the exception table)."""
        start = self.symbol.address
        pos = bisect.bisect_left(addresses, start)
        while pos < len(addresses) and addresses[pos] < self.symbol.end:
            if self.is_boundary(addresses[pos]):
                return self.insn_at_or_before(addresses[pos])
            pos += 1
        return None

    @cached_property
    def indirect_jumps(self) -> list[x86.Insn]:
        return [self.insns[k] for k in self.facts.indirect_jumps]

    @property
    def undecodable(self) -> x86.Insn | None:
        """The instruction where the kernel's walk gives up, if any."""
        return self.insns[-1] if self.facts.undecodable else None
