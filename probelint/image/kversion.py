"""What a kernel version and a build configuration are, apart from the image they are read from
(image/version.py reads them from an ELF): `KernelVersion`, `KernelConfig`, and the options a
``.config`` file given with ``--config`` sets (`with_config_file`)."""

from __future__ import annotations

import re
from functools import total_ordering
from typing import NamedTuple

from probelint.image.changes import applies_to_version

__all__ = [
    "MAX_KCONFIG",
    "OPTIONS",
    "ConfigInference",
    "KernelConfig",
    "KernelVersion",
    "kconfig_name",
    "parse_config",
    "parse_version",
    "with_config_file",
]

_RELEASE_RE = re.compile(r"(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?(?P<rest>\S*)")
_BANNER_RE = re.compile(r"Linux version (?P<release>\S+)")
# "Debian 6.1.192-2", "Debian 6.12.117-1~deb12u1": the distribution's version of the package
_DEBIAN_RE = re.compile(r"\bDebian (?P<version>(?P<upstream>\d+\.\d+(?:\.\d+)?)[-+~.\w]*)")


@total_ordering
class KernelVersion:
    """An upstream kernel version and where it came from.

    Compares by (major, minor, patch) with another `KernelVersion` or a tuple of 1..3 ints:
    ``version >= (6, 9)`` is true for 6.9.0 and later.
    """

    __slots__ = ("debian_version", "major", "minor", "patch", "raw", "release")

    def __init__(self, major: int, minor: int, patch: int, debian_version: str | None = None, release: str = "",
                 raw: str = "") -> None:
        self.major, self.minor, self.patch = major, minor, patch
        self.debian_version = debian_version  # "6.1.192-2" when the banner names it
        self.release = release  # uname -r: "6.1.0-56-cloud-amd64"
        self.raw = raw

    def __repr__(self) -> str:
        return (f"KernelVersion({self.major}, {self.minor}, {self.patch}, debian_version={self.debian_version!r}, "
                f"release={self.release!r})")

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @staticmethod
    def _other(other: object) -> tuple[int, ...] | None:
        if isinstance(other, KernelVersion):
            return other.key
        if isinstance(other, tuple) and 1 <= len(other) <= 3 and all(isinstance(x, int) for x in other):
            return tuple(other) + (0,) * (3 - len(other))
        return None

    def __eq__(self, other: object) -> bool:
        key = self._other(other)
        return NotImplemented if key is None else self.key == key

    def __lt__(self, other: object) -> bool:
        key = self._other(other)
        if key is None:
            return NotImplemented
        return self.key < key

    def __hash__(self) -> int:
        return hash(self.key)

    def at_least(self, major: int, minor: int = 0, patch: int = 0) -> bool:
        return self.key >= (major, minor, patch)

    def series(self) -> tuple[int, int]:
        """(major, minor): the stable series, e.g. (6, 12)."""
        return (self.major, self.minor)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.debian_version:
            text += f" (Debian {self.debian_version})"
        return text


def parse_version(text: str) -> KernelVersion | None:
    """A banner (``Linux version ...``), a vermagic string or a bare release (``6.12.117+deb12``)."""
    text = text.strip()
    banner = _BANNER_RE.search(text)
    release = banner.group("release") if banner else (text.split()[0] if text else "")
    m = _RELEASE_RE.match(release)
    if m is None:
        return None
    major, minor = int(m.group("major")), int(m.group("minor"))
    patch = int(m.group("patch") or 0)
    debian_version = None
    # "Debian 12.2.0-14" in the compiler part is gcc's: take the one of the same series.
    for debian in _DEBIAN_RE.finditer(text):
        upstream = [int(x) for x in debian.group("upstream").split(".")]
        if upstream[:2] != [major, minor]:
            continue
        debian_version = debian.group("version")
        # Debian's ABI release (6.1.0-56) hides the upstream patch level the package carries.
        if len(upstream) == 3:
            patch = upstream[2]
    return KernelVersion(major, minor, patch, debian_version, release, text)



# --------------------------------------------------------------------------- build options

# Options probelint's rules depend on. Names are this module's; `kconfig_name` gives the
# CONFIG_ symbol of a given kernel version (changes.py "mitigation-config-names": MITIGATION_*).
OPTIONS = (
    "X86_KERNEL_IBT",
    "RETPOLINE",
    "RETHUNK",
    "CALL_PADDING",
    "CALL_DEPTH_TRACKING",
    "CFI_CLANG",
    "FINEIBT",
    "KPROBES_ON_FTRACE",
    "OPTPROBES",
    "KPROBE_EVENTS_ON_NOTRACE",
    "PARAVIRT",
    "CPU_SRSO",
    "MITIGATION_ITS",
)

_RENAMED_6_9 = {
    "RETPOLINE": "MITIGATION_RETPOLINE",
    "RETHUNK": "MITIGATION_RETHUNK",
    "CALL_DEPTH_TRACKING": "MITIGATION_CALL_DEPTH_TRACKING",
    "CPU_SRSO": "MITIGATION_SRSO",
    "SLS": "MITIGATION_SLS",
    "CPU_IBPB_ENTRY": "MITIGATION_IBPB_ENTRY",
    "CPU_IBRS_ENTRY": "MITIGATION_IBRS_ENTRY",
    "CPU_UNRET_ENTRY": "MITIGATION_UNRET_ENTRY",
    "PAGE_TABLE_ISOLATION": "MITIGATION_PAGE_TABLE_ISOLATION",
}


def kconfig_name(option: str, version: KernelVersion | None) -> str:
    """``CONFIG_`` name of `option` in `version` (``RETPOLINE`` is ``MITIGATION_RETPOLINE`` >= 6.9)."""
    if version is not None and option in _RENAMED_6_9 and applies_to_version("mitigation-config-names", version):
        return _RENAMED_6_9[option]
    return option


class ConfigInference(NamedTuple):
    option: str
    value: bool | None  # None: no evidence either way
    reason: str


class KernelConfig:
    """The inferred options of one image, plus the embedded config when the image has one."""

    def __init__(self, version: KernelVersion | None, options: dict[str, ConfigInference],
                 embedded: dict[str, str] | None = None) -> None:
        self.version = version
        self.options = options
        self.embedded = embedded  # CONFIG_X -> "y"/"m"/"\"str\"" (IKCONFIG)

    def __getitem__(self, option: str) -> ConfigInference:
        return self.options[option]

    def enabled(self, option: str) -> bool | None:
        found = self.options.get(option)
        return found.value if found is not None else None

    def describe(self) -> list[str]:
        out = []
        for inf in self.options.values():
            state = {True: "y", False: "n", None: "?"}[inf.value]
            out.append(f"CONFIG_{kconfig_name(inf.option, self.version)}={state}: {inf.reason}")
        return out


# A kernel .config is ~300 KB (allyesconfig: under 1 MB): larger is not one, read no further
MAX_KCONFIG = 4 << 20


def parse_config(text: str) -> dict[str, str]:
    """A .config / /boot/config-* text: CONFIG_X -> value; ``# CONFIG_X is not set`` -> "n"."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:-len(" is not set")]] = "n"
    return out


def with_config_file(config: KernelConfig, text: str, where: str) -> KernelConfig:
    """`config` with every option the .config text sets taking the file's value."""
    given = parse_config(text)
    options = dict(config.options)
    for option, inferred in config.options.items():
        name = "CONFIG_" + kconfig_name(option, config.version)
        if name in given:
            value = given[name]
            options[option] = ConfigInference(option, value in ("y", "m"), f"{where}: {name}={value}")
        else:
            options[option] = inferred
    return KernelConfig(config.version, options, given)
