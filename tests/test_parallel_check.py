"""A large probe set checked by forked processes gives exactly the single-process results."""

from __future__ import annotations

import os

import probelint
from probelint import engine
from probelint.readers.spec import parse_text
from tests.conftest import DEMO


def _probe_set(kernel) -> list:
    """Every byte offset of the demo's functions, twice over (duplicates and probes inside other
    probes' windows, so that the set check pairs probes checked by different processes)."""
    image = kernel.vmlinux
    funcs = [s for s in image.symbols.symbols_in(0, 1 << 64) if s.type in "tT" and s.size]
    lines = [f"{s.name}+{off:#x}" for s in funcs for off in range(s.size)]
    lines = (lines * (1 + 350 // len(lines)))[:350] * 2
    return list(parse_text("\n".join(lines), "set.txt"))


def _summary(results) -> list:
    return [(r.spec.text, r.verdict.registers, r.verdict.errno, r.verdict.optimized, r.verdict.ftrace,
             list(r.verdict.reasons), [(f.rule, f.message, f.notes, f.fix) for f in r.findings]) for r in results]


def test_forked_check_equals_one_process(tmp_path):
    parsed = _probe_set(probelint.load_kernel([DEMO / "demo.elf"]))
    alone = engine.check_probes(probelint.load_kernel([DEMO / "demo.elf"]), parsed, jobs=1)
    forked = engine.check_probes(probelint.load_kernel([DEMO / "demo.elf"]), parsed, jobs=2)
    assert _summary(forked) == _summary(alone)
    fired = {f.rule for r in alone for f in r.findings}
    assert {"KP301", "KP302", "KP409"} <= fired  # the set check did pair probes across the split


def test_failed_child_leaves_its_run_to_the_parent(monkeypatch):
    parsed = _probe_set(probelint.load_kernel([DEMO / "demo.elf"]))
    alone = engine.check_probes(probelint.load_kernel([DEMO / "demo.elf"]), parsed, jobs=1)
    parent, check_one = os.getpid(), engine._check_one

    def failing_in_children(*args, **kwargs):
        if os.getpid() != parent:
            raise RuntimeError("child failure")
        return check_one(*args, **kwargs)

    monkeypatch.setattr(engine, "_check_one", failing_in_children)
    forked = engine.check_probes(probelint.load_kernel([DEMO / "demo.elf"]), parsed, jobs=2)
    assert _summary(forked) == _summary(alone)
