"""The text the kernel checks is the text as patched at boot, not the ELF's bytes.

`can_probe`, `can_optimize` and `copy_optimized_instructions` read live text. What changes
depends on the CPU and its mitigations, so it is an explicit choice, `CpuProfile`:

* return sites (``.return_sites``: each a 5-byte ``jmp __x86_return_thunk``) are rewritten by
  arch/x86/kernel/alternative.c `apply_returns` to ``ret; int3; int3; int3; int3`` when the CPU
  needs no return thunk (`ret`, e.g. qemu's qemu64), stay jumps into the thunk area when it does
  (`rethunk`: AMD with the retbleed/SRSO mitigation, e.g. EPYC-Rome), and with the Intel ITS
  return thunk stay jumps only where bit 5 of the site address is clear (`its`,
  `cpu_wants_rethunk_at`);
* ftrace sites are read back as a 5-byte NOP (`__recover_probed_insn`): same length as the ELF's
  call, so nothing to patch for decoding.

Not modelled yet: alternatives, paravirt and retpoline-site rewrites (probes inside such sites
may be judged on the ELF bytes).
"""

from __future__ import annotations

import bisect
import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probelint.image.kernel import Image

__all__ = ["DEFAULT_PROFILE", "CpuProfile", "patch_live_text"]

_RET_INT3 = b"\xc3\xcc\xcc\xcc\xcc"
_RETURN_SITE_SIZE = 5


class CpuProfile(enum.Enum):
    RET = "ret"
    RETHUNK = "rethunk"
    ITS = "its"

    def keeps_return_thunk(self, site: int) -> bool:
        if self is CpuProfile.RETHUNK:
            return True
        if self is CpuProfile.ITS:
            return not site & 0x20
        return False


# Intel CPUs unaffected by retbleed/ITS and mitigations=off boxes patch returns to `ret`: the
# most common deployment of a 6.1 kernel in clouds and what qemu64 does.
DEFAULT_PROFILE = CpuProfile.RET


def patch_live_text(image: Image, address: int, data: bytes, profile: CpuProfile) -> bytes:
    """`data` (the ELF bytes at `address`) as the running kernel holds them under `profile`."""
    sites = image.return_sites
    lo = bisect.bisect_left(sites, address - _RETURN_SITE_SIZE + 1)
    hi = bisect.bisect_left(sites, address + len(data))
    if lo == hi:
        return data
    buf = bytearray(data)
    for site in sites[lo:hi]:
        if profile.keeps_return_thunk(site):
            continue
        for i, byte in enumerate(_RET_INT3):
            pos = site - address + i
            if 0 <= pos < len(buf):
                buf[pos] = byte
    return bytes(buf)
