"""The settings of a run (`Config`): defaults, then ``[tool.probelint]`` in pyproject.toml or a
probelint.toml found by walking up from the current directory (as ruff does), then command-line
flags or `probelint.check()` keywords. One `Config` goes down the whole pipeline
(`probelint.pipeline.run`): the kernel is loaded with its CPU profile and .config, the gate
reports with its rules and severities, the reporters print what it says.

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

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from probelint.arch.x86.cpu import DEFAULT_PROFILE, PROFILE_NAMES, CpuProfile
from probelint.errors import InputError
from probelint.findings import Severity

__all__ = ["Config", "find_config", "load_config", "rule_ids"]

_KEYS = {"kernel", "select", "ignore", "fail-level", "cpu-profile", "severity"}
HINTS = ("auto", "always", "never")
MAX_CONFIG_FILE = 1 << 20  # pyproject.toml files are kilobytes
HINTS_AUTO_LIMIT = 500  # "auto": hints for sets up to this size (each hint checks a few more probe sets)


class Config:
    """The settings of a run. Keywords set any attribute: ``Config(select=["KP1"],
    cpu_profile="EPYC-Rome")``."""

    def __init__(self, source: str | None = None, **settings: Any) -> None:
        self.source = source  # the file the settings came from
        self.kernel: list[str] = []  # images for callers that pass only probe files (pre-commit)
        self.select: list[str] = []  # rule ids or prefixes to report (empty: all)
        self.ignore: list[str] = []
        self.fail_level = Severity.ERROR
        self.cpu_profile = DEFAULT_PROFILE.value
        self.severity: dict[str, Severity] = {}
        self.hints = "auto"  # HINTS
        # text and GitHub output show info findings (KP201 on every entry probe...) one by one;
        # otherwise they are counted in the summary, unless their rule is selected by name or prefix
        self.show_info = False
        self.jobs = 1  # processes checking a large probe set (the command line: one per CPU)
        self.source_type: str | None = None  # how to read probe files (None: by extension and content)
        self.cache = True  # keep whole-file facts in a build-id index
        self.cache_dir: Path | None = None
        self.dotconfig: Path | None = None  # the kernel's .config, overriding what is inferred
        self.modules: list[Path] = []  # where MOD.ko files are looked for
        self.loaded: list[str] = []  # modules assumed loaded (their symbols count for uniqueness)
        self.pending: list[str] = []  # modules that load after the probes are defined (Kernel.arrive)
        self.live = False  # the running kernel as it is (live.py): its text, blacklist, registered probes
        self.live_root = Path("/")  # where --live reads /proc and debugfs (tests, a guest's files)
        for name, value in settings.items():
            if not hasattr(self, name):
                raise TypeError(f"Config has no setting {name!r}")
            setattr(self, name, value)
        # keywords may spell severities and profiles as the config file does
        self.severity = {k.upper(): Severity.parse(v) if isinstance(v, str) else v for k, v in self.severity.items()}
        if isinstance(self.fail_level, str):
            self.fail_level = Severity.parse(self.fail_level)
        self.cpu_profile = CpuProfile(self.cpu_profile).value

    @property
    def profile(self) -> CpuProfile:
        return CpuProfile(self.cpu_profile)

    def selected(self) -> frozenset[str] | None:
        """The rule ids the run reports (None: every rule), from select and ignore prefixes."""
        if not self.select and not self.ignore:
            return None
        from probelint.checks import all_rules

        chosen = rule_ids(self.select, self.source or "--select") if self.select else set(all_rules())
        return frozenset(chosen - rule_ids(self.ignore, self.source or "--ignore"))

    def shows(self, severity: Severity, rule: str) -> bool:
        """Whether the human-facing formats list a finding (JSON and SARIF list them all)."""
        if severity > Severity.INFO or self.show_info:
            return True
        chosen = self.__dict__.get("_named")
        if chosen is None:
            chosen = self.__dict__["_named"] = frozenset(rule_ids(self.select, self.source or "--select"))
        return rule in chosen

    def wants_hints(self, probes: int) -> bool:
        return self.hints == "always" or (self.hints == "auto" and probes <= HINTS_AUTO_LIMIT)

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
            if not path.exists():
                continue
            data = _read(path, name == "pyproject.toml")
            tool = data.get("tool", {})
            own = data if name == "probelint.toml" else None  # probelint.toml may hold the table bare
            table = tool.get("probelint", own) if isinstance(tool, dict) else None
            if name == "probelint.toml" or table is not None:
                if not isinstance(table, dict):
                    raise InputError(str(path), "[tool.probelint] must be a table")
                return path, table
    return None


def _read(path: Path, only_if_named: bool = False) -> dict[str, Any]:
    """The TOML file at `path`; with `only_if_named`, {} for a file that never names probelint
    (most projects' pyproject.toml: its parsing, and tomllib's import, are skipped)."""
    from probelint.fileio import read_regular

    data = read_regular(path, MAX_CONFIG_FILE, "a configuration file")  # a FIFO, /dev/zero: one line
    if only_if_named and b"probelint" not in data:
        return {}
    import tomllib

    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"not a text file (byte {exc.start} is not UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), f"invalid TOML: {exc}") from None


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
    # ~ is the user's home; a relative path is relative to the file that names it
    config.kernel = [str(path.parent / Path(k).expanduser())
                     for k in _list(table.get("kernel", []), where, "kernel", "a list of image paths")]
    config.select = [v.upper() for v in _list(table.get("select", []), where, "select", "a list of rule ids")]
    config.ignore = [v.upper() for v in _list(table.get("ignore", []), where, "ignore", "a list of rule ids")]
    severity = table.get("severity", {})
    if not isinstance(severity, dict):
        raise InputError(where, "severity must be a table of rule id = severity")
    settings = {"fail-level": table.get("fail-level", "error"), **{f"severity.{k}": v for k, v in severity.items()}}
    for key, value in settings.items():
        if not isinstance(value, str):
            raise InputError(where, f"{key} must be a string: info, warning or error")
    try:
        config.fail_level = Severity.parse(settings["fail-level"])
        config.severity = {k.upper(): Severity.parse(v) for k, v in severity.items()}
    except ValueError as exc:
        raise InputError(where, str(exc)) from None
    config.cpu_profile = table.get("cpu-profile", DEFAULT_PROFILE.value)
    if config.cpu_profile not in PROFILE_NAMES:
        raise InputError(where, f"cpu-profile must be one of {', '.join(PROFILE_NAMES)}")
    config.cpu_profile = CpuProfile(config.cpu_profile).value  # aliases (ret, rethunk, its) by the CPU's name
    return config


def _list(value: Any, where: str, key: str, what: str) -> list[str]:
    """A string or a list of strings, as a list; anything else is an error naming the key."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(where, f"{key} must be {what}")
    return value


def rule_ids(items: Iterable[str], where: str) -> set[str]:
    """Rule ids matching each id or prefix (``KP2`` selects every KP2xx rule)."""
    from probelint.checks import all_rules

    known = set(all_rules())
    out: set[str] = set()
    for item in (i.strip().upper() for i in items if i.strip()):
        matched = {r for r in known if r.startswith(item)}
        if not matched:
            raise InputError(where, f"no rule matches {item!r} (see 'probelint rules')")
        out |= matched
    return out
