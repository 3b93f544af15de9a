"""Configuration: ``[tool.probelint]`` in pyproject.toml, or a probelint.toml, found by walking up
from the current directory (as ruff does). Command-line flags override every key.

    [tool.probelint]
    kernel = ["/usr/lib/debug/boot/vmlinux-6.1.0-56-cloud-amd64"]   # images for pre-commit / CI
    select = ["KP1", "KP2"]          # rule ids or prefixes
    ignore = ["KP201"]
    fail-level = "warning"
    cpu-profile = "rethunk"
    [tool.probelint.severity]
    KP205 = "info"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probelint.arch.x86.cpu import DEFAULT_PROFILE, PROFILE_NAMES, CpuProfile
from probelint.errors import InputError
from probelint.findings import Severity

__all__ = ["Config", "find_config", "load_config"]

_PROFILES = PROFILE_NAMES
_KEYS = {"kernel", "select", "ignore", "fail-level", "cpu-profile", "severity"}


class Config:
    """The settings of a run: defaults, then the config file, then the command line."""

    def __init__(self, source: str | None = None) -> None:
        self.source = source  # the file the settings came from
        self.kernel: list[str] = []
        self.select: list[str] = []
        self.ignore: list[str] = []
        self.fail_level = Severity.ERROR
        self.cpu_profile = DEFAULT_PROFILE.value
        self.severity: dict[str, Severity] = {}

    def as_toml(self) -> str:
        """The effective settings, as a ``[tool.probelint]`` table (`--show-config`)."""
        lines = [f"# from {self.source or 'defaults'}", "[tool.probelint]",
                 f"kernel = {self.kernel!r}", f"select = {self.select!r}", f"ignore = {self.ignore!r}",
                 f'fail-level = "{self.fail_level}"', f'cpu-profile = "{self.cpu_profile}"',
                 "[tool.probelint.severity]"]
        lines += [f'{rule} = "{sev}"' for rule, sev in sorted(self.severity.items())]
        return "\n".join(lines).replace("'", '"') + "\n"


def find_config(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest probelint.toml, or pyproject.toml with a [tool.probelint] table."""
    for directory in (start, *start.parents):
        for name in ("probelint.toml", "pyproject.toml"):
            path = directory / name
            if not path.is_file():
                continue
            data = _read(path)
            if name == "probelint.toml":
                return path, data.get("tool", {}).get("probelint", data)
            if "probelint" in data.get("tool", {}):
                return path, data["tool"]["probelint"]
    return None


def _read(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a file to read: a warm run without one skips the import

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), f"invalid TOML: {exc}") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror}") from None


def load_config(start: Path | None = None) -> Config:
    found = find_config((start or Path.cwd()).resolve())
    if found is None:
        return Config()
    path, table = found
    where = str(path)
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise InputError(where, f"unknown [tool.probelint] key {', '.join(unknown)}")
    config = Config(source=where)
    kernel = table.get("kernel", [])
    config.kernel = [str((path.parent / k).expanduser()) for k in ([kernel] if isinstance(kernel, str) else kernel)]
    config.select = _str_list(table.get("select", []), where, "select")
    config.ignore = _str_list(table.get("ignore", []), where, "ignore")
    try:
        config.fail_level = Severity.parse(table.get("fail-level", "error"))
        config.severity = {k.upper(): Severity.parse(v) for k, v in table.get("severity", {}).items()}
    except ValueError as exc:
        raise InputError(where, str(exc)) from None
    config.cpu_profile = table.get("cpu-profile", DEFAULT_PROFILE.value)
    if config.cpu_profile not in _PROFILES:
        raise InputError(where, f"cpu-profile must be one of {', '.join(_PROFILES)}")
    config.cpu_profile = CpuProfile(config.cpu_profile).value  # aliases (ret, rethunk, its) by the CPU's name
    return config


def _str_list(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(where, f"{key} must be a list of rule ids")
    return [v.upper() for v in value]
