"""A large probe set checked by forked processes gives exactly the single-process results."""

from __future__ import annotations

import os
from pathlib import Path

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


def _watch_children(monkeypatch, tmp_path, *, fail_in_children: bool = False) -> tuple[Path, list[bool]]:
    """Each process that checks a probe appends its pid to a file (children share no memory with
    the test); the parent notes, per child, whether it sent its results back."""
    pids, sent = tmp_path / "pids", []
    parent, check_one, collect = os.getpid(), engine._check_one, engine._collect

    def recording_check_one(*args, **kwargs):
        with pids.open("a") as out:
            out.write(f"{os.getpid()}\n")
        if fail_in_children and os.getpid() != parent:
            raise RuntimeError("child failure")
        return check_one(*args, **kwargs)

    def recording_collect(*args, **kwargs):
        result = collect(*args, **kwargs)
        sent.append(result is not None)
        return result

    monkeypatch.setattr(engine, "_check_one", recording_check_one)
    monkeypatch.setattr(engine, "_collect", recording_collect)
    return pids, sent


def _child_pids(pids: Path) -> set[int]:
    return set(map(int, pids.read_text().split())) - {os.getpid()}


def test_forked_check_equals_one_process(monkeypatch, tmp_path):
    parsed = _probe_set(probelint.load_kernel([DEMO / "demo.elf"]))
    alone = engine.check_probes(probelint.load_kernel([DEMO / "demo.elf"]), parsed, jobs=1)
    pids, sent = _watch_children(monkeypatch, tmp_path)
    forked = engine.check_probes(probelint.load_kernel([DEMO / "demo.elf"]), parsed, jobs=2)
    assert len(_child_pids(pids)) == 1 and sent == [True]  # a child checked its half and sent it back
    assert _summary(forked) == _summary(alone)
    fired = {f.rule for r in alone for f in r.findings}
    assert {"KP301", "KP302", "KP409"} <= fired  # the set check did pair probes across the split


def test_failed_child_leaves_its_run_to_the_parent(monkeypatch, tmp_path):
    parsed = _probe_set(probelint.load_kernel([DEMO / "demo.elf"]))
    alone = engine.check_probes(probelint.load_kernel([DEMO / "demo.elf"]), parsed, jobs=1)
    pids, sent = _watch_children(monkeypatch, tmp_path, fail_in_children=True)
    forked = engine.check_probes(probelint.load_kernel([DEMO / "demo.elf"]), parsed, jobs=2)
    assert len(_child_pids(pids)) == 1 and sent == [False]  # the child ran, failed and sent nothing
    assert _summary(forked) == _summary(alone)
