"""The ELF file as data: sections, symbols, bytes, build-id.

Headers, section headers and the symbol table are read with `struct` straight from the mapped
file: a vmlinux has ~150k symbols (about 20x faster than iterating pyelftools' symbol objects),
and a warm run, which reads nothing else, does not pay pyelftools' import (~20 ms). Every
malformed-file condition surfaces as an `InputError` naming the file.
"""

from __future__ import annotations

import io
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from probelint.errors import InputError
from probelint.fileio import open_regular
from probelint.image.compressed import decompress

__all__ = ["ElfFile", "ElfSection", "ElfSymbol"]

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHT_NOBITS = 8
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 1, 2, 3, 4
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
EM_X86_64 = 62

_SYM = struct.Struct("<IBBHQQ")
# Elf64_Ehdr from e_type on (after e_ident), and Elf64_Shdr
_EHDR = struct.Struct("<HHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
SHN_XINDEX = 0xFFFF
_ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
_EM_NAMES = {3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64", 22: "EM_S390", 40: "EM_ARM",
             62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV", 258: "EM_LOONGARCH"}


class ElfSection(NamedTuple):
    index: int
    name: str
    type: int
    flags: int
    address: int
    offset: int
    size: int
    align: int
    link: int
    info: int
    entsize: int = 0  # sh_entsize: a table's entry size (.altinstructions: 12 in 6.1, 14 from 6.3)

    @property
    def is_alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC)

    @property
    def is_exec(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)

    @property
    def is_write(self) -> bool:
        return bool(self.flags & SHF_WRITE)


class ElfSymbol(NamedTuple):
    index: int  # position in .symtab: modules resolve ties by it
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int


# Section headers: the module loader reads the 16-bit e_shnum as it is (no SHN_XINDEX), and a
# vmlinux has a few hundred sections. Symbols: Debian's vmlinux has ~150k.
MAX_SECTIONS = 0xFFFF
MAX_SYMBOLS = 1 << 21

COMPRESSED_SUFFIXES = {".xz": "xz", ".gz": "gzip", ".zst": "zstd"}  # modules as distributions install them
MODULE_SUFFIXES = (".ko", *(f".ko{suffix}" for suffix in COMPRESSED_SUFFIXES))


def modname(name: str) -> str:
    """A module name as the kernel spells it (KBUILD_MODNAME: dashes are underscores)."""
    return name.replace("-", "_")


def modname_of_file(path: str | Path) -> str:
    """The module name a .ko file's name gives (``nf-tables.ko.xz`` -> ``nf_tables``)."""
    return modname(Path(path).name.split(".ko", 1)[0])


def is_module_file(path: str) -> bool:
    """ET_REL (a .ko), from the ELF header alone; compressed images are modules."""
    if path.endswith(MODULE_SUFFIXES[1:]):  # compressed: the header is not ELF
        return True
    with open(path, "rb") as fh:
        header = fh.read(18)
    # a bzImage's bytes 16-17 are boot code: only an ELF header says ET_REL
    return len(header) == 18 and header[:4] == b"\x7fELF" and int.from_bytes(header[16:18], "little") == 1


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    while chunk := fh.read(1 << 20):
        yield chunk


class ElfFile:
    """An x86-64 ELF image (vmlinux or module), mapped read-only (or decompressed into memory); a
    bzImage stands for the vmlinux inside it (image/bzimage.py, kept under `cache_root`)."""

    def __init__(self, path: str | Path, cache_root: Path | None = None) -> None:
        self.path = str(path)
        self.bzimage = False
        # a regular file only (a FIFO would block, a device read without end); lives as long as the image
        self._fh: BinaryIO = open_regular(path)
        self._map: mmap.mmap | bytes
        suffix = Path(self.path).suffix
        if suffix in COMPRESSED_SUFFIXES:
            self._map = decompress(self.path, _chunks(self._fh), COMPRESSED_SUFFIXES[suffix], "a kernel module")
            self._fh = io.BytesIO(self._map)
        else:
            try:
                self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:
                raise InputError(self.path, "empty file, not an ELF image") from None
            from probelint.image.bzimage import is_bzimage, vmlinux_of

            if self._map[:4] != b"\x7fELF" and is_bzimage(self._map[:0x210]):
                self.bzimage = True
                self._map = vmlinux_of(self.path, self._map, cache_root)
        if self._map[:4] != b"\x7fELF":
            raise InputError(self.path, "not an ELF file")
        ident = self._map[:16]
        machine = int.from_bytes(self._map[18:20], "little") if len(self._map) >= 20 else None
        if len(ident) == 16 and ident[4] == 1 and ident[5] == 1 and machine is not None:  # 32-bit
            what = "32-bit x86-64" if machine == EM_X86_64 else f"architecture {_EM_NAMES.get(machine, machine)}"
            raise InputError(self.path, f"unsupported {what} (ELFCLASS32): probelint models 64-bit x86-64 kernels")
        if len(self._map) < 64 or ident[4] != 2 or ident[5] != 1:
            raise InputError(self.path, "corrupt ELF: not a little-endian 64-bit header")
        (e_type, machine, _version, _entry, _phoff, shoff, _flags, _ehsize, _phentsize, _phnum, shentsize,
         shnum, shstrndx) = _EHDR.unpack_from(self._map, 16)
        if machine != EM_X86_64:
            raise InputError(self.path, f"unsupported architecture {_EM_NAMES.get(machine, machine)} "
                                        f"(probelint models x86-64 kernels)")
        self.type = _ET_NAMES.get(e_type, f"ET_{e_type:#x}")
        self.sections = self._read_sections(shoff, shentsize, shnum, shstrndx)
        self._by_name = {s.name: s for s in reversed(self.sections)}
        self._symbols: list[ElfSymbol] | None = None

    def _read_sections(self, shoff: int, shentsize: int, shnum: int, shstrndx: int) -> list[ElfSection]:
        if shoff == 0:
            return []
        if shentsize != _SHDR.size:
            raise InputError(self.path, f"corrupt ELF: {shentsize}-byte section headers (ELF64 has {_SHDR.size})")
        if shoff + _SHDR.size > len(self._map):
            raise InputError(self.path, "corrupt ELF: section header table outside the file")
        first = _SHDR.unpack_from(self._map, shoff)
        shnum = shnum or first[5]  # more than 0xff00 sections: the count is in section 0's sh_size
        shstrndx = first[6] if shstrndx == SHN_XINDEX else shstrndx
        if shnum > MAX_SECTIONS:
            raise InputError(self.path, f"corrupt ELF: {shnum} section headers (a kernel image has a few hundred, "
                                        f"a module at most {MAX_SECTIONS})")
        if shoff + shnum * _SHDR.size > len(self._map):
            raise InputError(self.path, "corrupt ELF: section header table outside the file")
        if shstrndx >= shnum:
            raise InputError(self.path, f"corrupt ELF: section names in section {shstrndx} of {shnum}")
        headers = [_SHDR.unpack_from(self._map, shoff + k * _SHDR.size) for k in range(shnum)]
        str_offset, str_size = headers[shstrndx][4], headers[shstrndx][5]
        names = self._map[str_offset : str_offset + str_size]
        sections = []
        for index, (name, sh_type, flags, address, offset, size, link, info, align, entsize) in enumerate(headers):
            if name >= max(len(names), 1) and index:
                raise InputError(self.path, f"corrupt ELF: section {index} has no name in the string table")
            sec = ElfSection(index, names[name : names.find(b"\0", name)].decode("utf-8", "replace"), sh_type,
                             flags, address, offset, size, align, link, info, entsize)
            if sec.type != SHT_NOBITS and sec.offset + sec.size > len(self._map):
                raise InputError(self.path, f"section {sec.name} runs past the end of the file (truncated?)")
            sections.append(sec)
        return sections

    @property
    def is_relocatable(self) -> bool:
        return self.type == "ET_REL"

    def section(self, name: str) -> ElfSection | None:
        return self._by_name.get(name)

    def section_bytes(self, sec: ElfSection, start: int = 0, size: int | None = None) -> bytes:
        """Bytes of `sec` from offset `start` (zeros for NOBITS sections)."""
        size = sec.size - start if size is None else size
        if sec.type == SHT_NOBITS:
            return bytes(size)
        begin = sec.offset + start
        return self._map[begin : begin + size]

    def symbols(self) -> list[ElfSymbol]:
        """Every .symtab entry (index 0 included) as `ElfSymbol` (parsed once)."""
        if self._symbols is None:
            self._symbols = self._parse_symbols()
        return self._symbols

    def _parse_symbols(self) -> list[ElfSymbol]:
        symtab = self.section(".symtab")
        if symtab is None:
            raise InputError(self.path, "no .symtab: stripped; name its System.map or a kallsyms dump beside it "
                                        "(or use the unstripped image: Debian's -dbg package)")
        if symtab.link >= len(self.sections):
            raise InputError(self.path, "corrupt ELF: .symtab names a missing string table")
        if symtab.size // _SYM.size > MAX_SYMBOLS:
            raise InputError(self.path, f"corrupt ELF: {symtab.size // _SYM.size} symbols (more than {MAX_SYMBOLS})")
        strtab = self.section_bytes(self.sections[symtab.link])
        data = self.section_bytes(symtab)
        out = []
        for index, (st_name, info, _other, shndx, value, size) in enumerate(
            _SYM.iter_unpack(data[: len(data) - len(data) % _SYM.size])
        ):
            end = strtab.find(b"\0", st_name)
            name = strtab[st_name:end].decode("utf-8", "replace") if st_name < len(strtab) else ""
            out.append(ElfSymbol(index, name, value, size, info & 0xF, info >> 4, shndx))
        return out

    def build_id(self) -> str | None:
        for sec in self.sections:
            if sec.type != 7:  # SHT_NOTE
                continue
            data = self.section_bytes(sec)
            pos = 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
                name_end = pos + 12 + ((namesz + 3) & ~3)
                if ntype == 3 and data[pos + 12 : pos + 12 + namesz].rstrip(b"\0") == b"GNU":
                    return data[name_end : name_end + descsz].hex()
                pos = name_end + ((descsz + 3) & ~3)
        return None
