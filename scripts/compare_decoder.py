#!/usr/bin/env python3
"""Differential test: probelint's x86 length decoder against the kernel's own, on a vmlinux.

For every kallsyms symbol of nm type t/T/W in [_stext, _etext) (optionally also init text), both
decoders walk the symbol from its start the way can_probe()/can_optimize() do: instruction by
instruction until the symbol end, with the real following bytes available to the last
instruction, stopping at the first undecodable one. The walks must give the same instruction
starts and lengths, and fail (if they do) at the same offset.

The kernel's decoder is built from the linux-source package by scripts/kernel_decoder.py; before
comparing, its opcode attribute tables are checked to be identical to those linked into the
vmlinux (inat_primary_table, inat_escape_tables, inat_group_tables, inat_avx_tables).

Exit status: 0 all agree, 1 some disagreement (or table mismatch), 2 cannot run.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernel_decoder import (
    MAX_INSN_SIZE,
    KernelDecoder,
    SourceUnavailable,
    WalkResult,
    build_kernel_decoder,
)

from probelint.arch.x86 import decode as x86
from probelint.image.kallsyms import KSym
from probelint.image.kernel import Image, open_image

DEFAULT_VMLINUX = "/var/cache/probelint-kernels/x/usr/lib/debug/boot/vmlinux-6.1.0-56-cloud-amd64"
FUNCTION_TYPES = "tTW"
TEXTS = ("elf", "live")

__all__ = [
    "Comparison",
    "Disagreement",
    "TextComparison",
    "compare",
    "debian_version",
    "select_symbols",
    "table_mismatches",
]


@dataclass
class Disagreement:
    text: str  # "elf" or "live"
    symbol: str
    address: int
    offset: int
    bytes: str
    kernel: str  # length, "undecodable (errno)" or "end"
    probelint: str
    probelint_text: str

    def __str__(self) -> str:
        return (f"[{self.text}] {self.symbol} {self.address:#x}+{self.offset:#x}: bytes {self.bytes}: "
                f"kernel {self.kernel}, probelint {self.probelint} ({self.probelint_text})")


@dataclass
class TextComparison:
    """The comparison on one rendering of the text (ELF bytes, or live text as patched at boot)."""

    text: str
    functions_agree: int
    boundaries_kernel: int
    boundaries_probelint: int
    undecodable_both: int
    disagreements: list[Disagreement]
    seconds_kernel: float
    seconds_probelint: float
    seconds_read: float


@dataclass
class Comparison:
    vmlinux: str
    kernel_source: str
    functions_total: int
    functions_compared: int
    tables_checked: int
    table_mismatches: list[str]
    texts: list[TextComparison]
    seconds_build: float

    @property
    def disagreements(self) -> list[Disagreement]:
        return [d for t in self.texts for d in t.disagreements]

    @property
    def ok(self) -> bool:
        return not self.disagreements and not self.table_mismatches


def debian_version(image: Image) -> str | None:
    """The Debian package version in the vmlinux's linux_banner ("... Debian 6.1.192-2 (...)")."""
    for name in ("linux_banner",):
        sym = image.symbols.lookup_name(name)
        if sym is not None:
            text = image.read(sym.address, 512).split(b"\0", 1)[0].decode(errors="replace")
            # the last "Debian X" is the package version; an earlier one may be the compiler's
            if found := re.findall(r"\bDebian (\d\S*)", text):
                return found[-1]
    return None


def select_symbols(image: Image, *, with_init: bool = False) -> list[KSym]:
    ranges = [("_stext", "_etext")] + ([("_sinittext", "_einittext")] if with_init else [])
    out: list[KSym] = []
    for lo_name, hi_name in ranges:
        lo, hi = image.marker(lo_name), image.marker(hi_name)
        if lo is None or hi is None:
            raise SystemExit(f"compare_decoder: {image.path} has no {lo_name}/{hi_name}")
        out += [s for s in image.symbols.symbols_in(lo, hi) if s.type in FUNCTION_TYPES]
    return out


def _elf_symbol(image: Image, name: str):
    for sym in image.elf.symbols():
        if sym.name == name and sym.size:
            return sym
    return None


def vmlinux_tables(image: Image, dims: list[int]) -> list[str]:
    """The vmlinux's opcode attribute tables, in the driver's --dump-tables format."""
    n_esc, n_grp, n_avx, n_pfx, opsize, grpsize = dims
    lines = [f"dims {' '.join(map(str, dims))}"]

    def fmt(name: str, i: int, j: int, data: bytes | None) -> str:
        if data is None:
            return f"{name} {i} {j} -"
        vals = [int.from_bytes(data[k : k + 4], "little") for k in range(0, len(data), 4)]
        return f"{name} {i} {j} " + " ".join(f"{v:x}" for v in vals)

    prim = _elf_symbol(image, "inat_primary_table")
    if prim is None:
        raise SystemExit("compare_decoder: the vmlinux has no inat_primary_table symbol")
    lines.append(fmt("inat_primary_table", 0, 0, image.read(prim.value, opsize * 4)))
    for name, rows, size in (("inat_escape_tables", n_esc, opsize), ("inat_group_tables", n_grp, grpsize),
                             ("inat_avx_tables", n_avx, opsize)):
        sym = _elf_symbol(image, name)
        if sym is None:
            raise SystemExit(f"compare_decoder: the vmlinux has no {name} symbol")
        ptrs = image.read(sym.value, rows * n_pfx * 8)
        for i in range(rows):
            for j in range(n_pfx):
                p = int.from_bytes(ptrs[(i * n_pfx + j) * 8 :][:8], "little")
                lines.append(fmt(name, i, j, image.read(p, size * 4) if p else None))
    return lines


def table_mismatches(image: Image, decoder: KernelDecoder) -> tuple[int, list[str]]:
    ours = decoder.dump_tables().splitlines()
    dims = [int(x) for x in ours[0].split()[1:]]
    theirs = vmlinux_tables(image, dims)
    bad = [f"{' '.join(a.split()[:3])}: differs from the vmlinux's"
           for a, b in zip(ours, theirs, strict=False) if a != b]
    if len(ours) != len(theirs):
        bad.append(f"{len(ours)} table lines built, {len(theirs)} in the vmlinux")
    return sum(1 for line in ours if not line.endswith(" -")) - 1, bad


def _pairs(lengths: bytes) -> list[tuple[int, int]]:
    pairs, off = [], 0
    for n in lengths:
        pairs.append((off, n))
        off += n
    return pairs


def _probelint_walk(insns: Sequence[x86.Insn], base: int) -> tuple[bytes, int | None]:
    """(instruction lengths, offset of the undecodable instruction or None), like WalkResult."""
    lengths = bytearray()
    expected = base
    for insn in insns:
        if insn.address != expected:  # decode() is linear; anything else is a bug worth seeing
            raise AssertionError(f"probelint walk of {base:#x} jumps to {insn.address:#x}")
        if not insn.valid:
            return bytes(lengths), insn.address - base
        lengths.append(insn.length)
        expected = insn.end
    return bytes(lengths), None


def _describe(pairs: list[tuple[int, int]], failed: int | None, i: int, err: str) -> str:
    if i < len(pairs):
        return f"length {pairs[i][1]}"
    return f"undecodable{err}" if failed is not None else "walk ended"


def _disagreement(text: str, sym: KSym, code: bytes, kres: WalkResult, plen: bytes, pfailed: int | None,
                  insns: Sequence[x86.Insn]) -> Disagreement:
    kpairs, ppairs, kfailed = _pairs(kres.lengths), _pairs(plen), kres.failed_at
    i = next((k for k, (a, b) in enumerate(zip(kpairs, ppairs, strict=False)) if a != b),
             min(len(kpairs), len(ppairs)))
    offset = (kpairs[i][0] if i < len(kpairs) else ppairs[i][0] if i < len(ppairs)
              else kfailed if kfailed is not None else pfailed) or 0
    p_insn = next((x for x in insns if x.address - sym.address == offset), None)
    kerr = f" ({errno.errorcode.get(-kres.status, kres.status)})" if kres.status else ""
    return Disagreement(
        text=text,
        symbol=sym.name,
        address=sym.address,
        offset=offset,
        bytes=code[offset:][:MAX_INSN_SIZE].hex(" "),
        kernel=_describe(kpairs, kfailed, i, kerr),
        probelint=_describe(ppairs, pfailed, i, ""),
        probelint_text=x86.format_insn(p_insn) if p_insn is not None else "-",
    )


def _decode_like_function(code: bytes, sym: KSym) -> list[x86.Insn]:
    """Image.function()'s walk of `code` (the symbol's bytes and what follows)."""
    insns = []
    for insn in x86.decode(code, sym.address):
        if insn.address >= sym.end:
            break
        insns.append(insn)
    return insns


def compare(
    vmlinux: str | Path,
    *,
    sample: int | None = None,
    seed: int = 0,
    with_init: bool = False,
    texts: Sequence[str] = TEXTS,
    source_deb: str | Path | None = None,
    download: bool = True,
    log=None,
) -> Comparison:
    image = open_image(vmlinux)
    t0 = time.perf_counter()
    decoder = build_kernel_decoder(source_deb, version=debian_version(image), download=download, log=log)
    t_build = time.perf_counter() - t0
    n_tables, bad_tables = table_mismatches(image, decoder)

    syms = select_symbols(image, with_init=with_init)
    total = len(syms)
    if sample is not None and sample < total:
        syms = sorted(random.Random(seed).sample(syms, sample), key=lambda s: s.address)

    results = []
    for text in texts:
        t0 = time.perf_counter()
        records = [(s.address, s.size, image.read(s.address, s.size + MAX_INSN_SIZE)) for s in syms]
        if text == "live":
            from probelint.arch.x86.patching import patch_live_text

            records = [(a, n, patch_live_text(image, a, code, image.profile)) for a, n, code in records]
        t_read = time.perf_counter() - t0

        t0 = time.perf_counter()
        kernel = decoder.walk(records)
        t_kernel = time.perf_counter() - t0

        agree = undecodable = n_kernel = n_ours = 0
        disagreements = []
        t_ours = 0.0
        functions = getattr(image, "_functions", None)
        for sym, (_, _, code), kres in zip(syms, records, kernel, strict=True):
            t0 = time.perf_counter()
            if text == "live":  # the model itself (Image.function): what the rules see
                insns: Sequence[x86.Insn] = image.function(sym).insns
            else:
                insns = _decode_like_function(code, sym)
            t_ours += time.perf_counter() - t0
            # Keep memory flat: Image caches every Function (~7M decoded instructions in all).
            if isinstance(functions, dict):
                functions.clear()
            plen, pfailed = _probelint_walk(insns, sym.address)
            n_kernel += len(kres.lengths)
            n_ours += len(plen)
            if plen == kres.lengths and pfailed == kres.failed_at:
                agree += 1
                undecodable += pfailed is not None
            else:
                disagreements.append(_disagreement(text, sym, code, kres, plen, pfailed, insns))
        results.append(TextComparison(text, agree, n_kernel, n_ours, undecodable, disagreements,
                                      t_kernel, t_ours, t_read))

    return Comparison(
        vmlinux=str(vmlinux),
        kernel_source=f"{decoder.package} {decoder.version}",
        functions_total=total,
        functions_compared=len(syms),
        tables_checked=n_tables,
        table_mismatches=bad_tables,
        texts=results,
        seconds_build=t_build,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("vmlinux", nargs="?", default=os.environ.get("PROBELINT_VMLINUX", DEFAULT_VMLINUX))
    ap.add_argument("--sample", type=int, help="compare a deterministic random sample of N functions")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    ap.add_argument("--with-init", action="store_true", help="also compare init text [_sinittext, _einittext)")
    ap.add_argument("--text", choices=[*TEXTS, "both"], default="both",
                    help="decode the ELF's bytes, the live text of probelint's model (return sites "
                         "patched as at boot), or both (default)")
    ap.add_argument("--source-deb", help="linux-source .deb or a directory holding it ($PROBELINT_SOURCE_DEB)")
    ap.add_argument("--no-download", action="store_true", help="never run apt-get download")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if not Path(args.vmlinux).is_file():
        print(f"compare_decoder: {args.vmlinux}: no such file", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        res = compare(args.vmlinux, sample=args.sample, seed=args.seed, with_init=args.with_init,
                      texts=TEXTS if args.text == "both" else (args.text,),
                      source_deb=args.source_deb, download=not args.no_download,
                      log=lambda m: print(m, file=sys.stderr))
    except SourceUnavailable as exc:
        print(f"compare_decoder: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    if args.json:
        d = dataclasses.asdict(res)
        d["seconds_total"] = elapsed
        d["ok"] = res.ok
        print(json.dumps(d, indent=2))
    else:
        print(f"vmlinux:              {res.vmlinux}")
        print(f"kernel decoder:       {res.kernel_source} (arch/x86/lib/insn.c, inat.c)")
        print(f"opcode tables:        {res.tables_checked} tables, "
              + ("identical to the vmlinux's" if not res.table_mismatches
                 else f"{len(res.table_mismatches)} DIFFER from the vmlinux's"))
        for line in res.table_mismatches:
            print(f"  {line}")
        sampled = f" (sample, seed {args.seed})" if res.functions_compared < res.functions_total else ""
        print(f"functions compared:   {res.functions_compared} of {res.functions_total}{sampled}")
        for t in res.texts:
            print(f"[{t.text} text]")
            print(f"  functions agreeing:   {t.functions_agree}")
            print(f"  boundaries:           kernel {t.boundaries_kernel}, probelint {t.boundaries_probelint}")
            print(f"  undecodable (agreed): {t.undecodable_both} functions end in an undecodable instruction")
            print(f"  disagreements:        {len(t.disagreements)}")
            for dis in t.disagreements:
                print(f"    {dis}")
            print(f"  time: kernel decoder {t.seconds_kernel:.2f}s, probelint {t.seconds_probelint:.2f}s, "
                  f"reading bytes {t.seconds_read:.2f}s")
        print(f"time: build/lookup {res.seconds_build:.2f}s, total {elapsed:.2f}s")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
