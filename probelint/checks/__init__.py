"""Rules: one module per rule, named after its id (``kp104_not_insn_boundary.py``).

Each rule module defines ``RULE``: its id, default severity, the errno the kernel returns when
the rule decides registration, the kernel function it reproduces, and ``check``. The rule's
page (what it detects, why, example, fix) is ``rules/<ID>.md``: the single source of rule text.

A rule has one of three hooks, by what it looks at:

* ``check(ctx) -> Iterator[Hit]``: one resolved probe (`ProbeContext`). Registration rules run in
  the kernel's own order (`probelint.engine.KERNEL_ORDER`): the first one that refuses the probe
  decides the errno, exactly as `register_kprobe()` returns at the first failed test, and the
  later ones are not evaluated;
* ``check_input(problem) -> Hit | None``: a line no reader could turn into a probe (`ParseProblem`);
* ``check_set(results, emit)``: the whole probe set once every probe is checked (probes that
  interfere, duplicates, wildcard expansions, unused suppressions).

Every finding, of every hook, goes through one gate (`probelint.gate.Gate.emit`): select,
ignore, configured severities and ``# probelint: ignore[...]`` apply to all of them alike.
"""

from __future__ import annotations

import enum
import importlib
import os
from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING, NamedTuple, Protocol

from probelint.arch.x86 import decode as x86
from probelint.findings import Finding, Fix, Location, Severity, Verdict

if TYPE_CHECKING:
    from probelint.image.kallsyms import KSym
    from probelint.image.kernel import Function, Image, Kernel
    from probelint.readers.spec import ParseProblem, ProbeSpec

__all__ = ["Emit", "Hit", "ProbeContext", "ProbeResult", "Rule", "Stage", "all_rules"]


class Stage(enum.Enum):
    """When a rule runs; registration stages in kernel order, then the rest."""

    INPUT = "input"  # the probe text itself
    FRONTEND = "frontend"  # kprobe_events / perf PMU checks before register_kprobe()
    RESOLVE = "resolve"  # _kprobe_addr()
    ADDRESS = "address"  # check_kprobe_address_safe()
    INSN = "insn"  # arch_prepare_kprobe()
    OPTIMIZE = "optimize"  # try_to_optimize_kprobe(): silent fallback to int3
    INFO = "info"  # never changes the verdict
    SET = "set"  # the probe set as a whole, once every probe is checked
    AUDIT = "audit"  # after every other rule: what the findings themselves say (unused suppressions)


class Hit(NamedTuple):
    """A rule firing: the message, and lines of context shown under it. A costly message or notes
    (disassembly) may be given as a function, called only when the finding is reported: the probe
    map checks millions of boundaries for their verdicts alone."""

    message: str | Callable[[], str]
    notes: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    errno: str | None = None  # overrides Rule.errno where the kernel version decides it
    fix: Fix | None = None
    # with Rule.leaves_unchecked: only whether the probe is optimized is unknown (the optimizer's
    # rules are not run); registration is checked as usual (a module's thunk jumps: KP412)
    optimization_only: bool = False

    def text(self) -> str:
        return self.message() if callable(self.message) else self.message

    def note_lines(self) -> tuple[str, ...]:
        return self.notes() if callable(self.notes) else self.notes


class ProbeContext:
    """Everything the rules may look at for one probe; rules never open files."""

    __slots__ = ("_function", "_on_ftrace_site", "_window", "_window_end", "address", "image", "kernel", "named",
                 "named_image", "on_func_entry", "spec", "symbol", "verdict")

    def __init__(self, spec: ProbeSpec, kernel: Kernel) -> None:
        self.spec = spec
        self.kernel = kernel
        self.verdict = Verdict()
        # Filled by resolution (`_kprobe_addr`): the image and kallsyms symbol containing the
        # probe address after re-basing, and the symbol the user named, if any.
        self.image: Image | None = None
        self.symbol: KSym | None = None
        self.address: int | None = None
        self.named: KSym | None = None
        self.named_image: Image | None = None
        # arch_adjust_kprobe_addr(): the probe is on its function's entry (offset 0, or 0/4 past an
        # IBT ENDBR, which moves the probe to +4)
        self.on_func_entry = False
        self._window: tuple[x86.Insn, ...] | None = None  # computed once: several rules and the set check read it
        self._window_end: int | None = None
        self._function: Function | None = None
        self._on_ftrace_site: bool | None = None

    def __repr__(self) -> str:
        return f"ProbeContext({self.spec.text!r}, address={self.address!r}, symbol={self.symbol!r})"

    @property
    def offset(self) -> int:
        assert self.symbol is not None and self.address is not None
        return self.address - self.symbol.address

    @property
    def on_ftrace_site(self) -> bool:
        """check_ftrace_location(): `ftrace_location(addr) == addr`, an exact fentry site."""
        if self.image is None or self.address is None:
            return False
        if self._on_ftrace_site is None:  # asked by several rules: resolution is over by then
            self._on_ftrace_site = self.image.ftrace_site_in(self.address, self.address + 1) == self.address
        return self._on_ftrace_site

    def insn(self) -> x86.Insn | None:
        """The instruction at (or containing) the probe address, as `can_probe` walks to it."""
        assert self.address is not None
        return self.function().insn_at_or_before(self.address)

    def window(self) -> tuple[x86.Insn, ...]:
        """copy_optimized_instructions(): whole instructions from the probe until >= 5 bytes."""
        if self._window is None:
            self._window = self._compute_window()
        return self._window

    def window_end(self) -> int:
        """Where the jump window ends (the probe address if it holds no instruction): all the set
        check needs, and what a forked checker sends back instead of the window."""
        if self._window_end is None:
            window = self.window()
            assert self.address is not None
            self._window_end = window[-1].end if window else self.address
        return self._window_end

    def _compute_window(self) -> tuple[x86.Insn, ...]:
        fn = self.function()
        assert self.address is not None and self.image is not None
        out: list[x86.Insn] = []
        insn = fn.insn_at_or_before(self.address)
        while insn is not None and insn.address < self.address + x86.JMP32_INSN_SIZE:
            out.append(insn)
            nxt = fn.insn_after(insn.address)
            if nxt is None and insn.end < self.address + x86.JMP32_INSN_SIZE:
                # past the kallsyms end: the kernel copies on regardless
                data = self.image.read(insn.end, x86.MAX_INSN_SIZE)
                nxt = next(x86.decode(data, insn.end), None)
            insn = nxt
        return tuple(out)

    def function(self) -> Function:
        if self._function is None:
            assert self.image is not None and self.symbol is not None
            self._function = self.image.function(self.symbol)
        return self._function

    def where(self) -> str:
        """The probe as the kernel names it after re-basing: ``[MOD:]SYM+0xOFF``."""
        assert self.image is not None and self.address is not None
        return self.image.describe(self.address)


class ProbeResult:
    """One probe's outcome: the spec (or the parse problem), verdict and findings. `fired` holds
    every rule that fired on it, reported or not (suppressed, not selected): KP403 reads it."""

    __slots__ = ("context", "findings", "fired", "spec", "verdict")

    def __init__(self, spec: ProbeSpec | ParseProblem, verdict: Verdict, findings: list[Finding] | None = None,
                 context: ProbeContext | None = None) -> None:
        self.spec = spec
        self.verdict = verdict
        self.findings: list[Finding] = findings if findings is not None else []
        self.fired: set[str] = set()
        self.context = context

    def __repr__(self) -> str:
        return f"ProbeResult({self.spec.text!r}, {self.verdict!r}, {len(self.findings)} findings)"


class Emit(Protocol):
    """The gate every finding passes (`probelint.gate.Gate.emit`)."""

    def __call__(self, result: ProbeResult, rule: str, message: str, notes: tuple[str, ...] = (),
                 fix: Fix | None = None, *, location: Location | None = None,
                 severity: Severity | None = None) -> None: ...


CheckFn = Callable[[ProbeContext], Iterator[Hit]]
InputCheckFn = Callable[["ParseProblem"], Hit | None]
SetCheckFn = Callable[[list[ProbeResult], Emit], None]


class Rule(NamedTuple):
    id: str
    name: str  # kebab-case, as ruff names rules
    severity: Severity
    stage: Stage
    check: CheckFn | None  # per probe; None for input and set rules
    kernel_function: str  # the kernel code that decides, e.g. "arch/x86/kernel/kprobes/core.c:can_probe"
    errno: str | None = None  # what registration returns when this rule fires
    check_input: InputCheckFn | None = None
    check_set: SetCheckFn | None = None
    # the probe cannot be checked at all (a module not given, a form not modelled): the verdict
    # is unknown, neither "registers" nor "refused"
    leaves_unchecked: bool = False


@cache
def all_rules() -> dict[str, Rule]:
    """Every rule, by id, discovered from the modules of `probelint.checks`."""
    rules = {}
    # the package's modules, listed directly: pkgutil.iter_modules imports `inspect` (~6 ms)
    names = sorted({entry.name[:-3] for path in __path__ for entry in os.scandir(path)
                    if entry.name.endswith(".py") and not entry.name.startswith("_")})
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        rule = getattr(module, "RULE", None)
        if isinstance(rule, Rule):
            rules[rule.id] = rule
    return dict(sorted(rules.items()))
