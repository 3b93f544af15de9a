"""``--format json``: the stable machine schema (probelint/schema/report.schema.json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from probelint._version import __version__
from probelint.checks import ProbeResult
from probelint.pipeline import Report
from probelint.readers.spec import ParseProblem

__all__ = ["render", "to_dict"]

SCHEMA_VERSION = 1


def _probe(result: ProbeResult) -> dict[str, Any]:
    spec, ctx, v = result.spec, result.context, result.verdict
    located = ctx is not None and ctx.symbol is not None and ctx.image is not None
    address = None
    if located and ctx is not None and ctx.image is not None and not ctx.image.is_module:
        address = f"{ctx.address:#x}"
    return {
        "spec": spec.text,
        "file": spec.location.file,
        "line": spec.location.line,
        "column": spec.location.column,
        "kind": None if isinstance(spec, ParseProblem) else ("kretprobe" if spec.is_return else "kprobe"),
        "path": spec.origin.path,
        "tool": spec.origin.tool,
        "address": address,
        "module": ctx.image.name if located and ctx and ctx.image and ctx.image.is_module else None,
        "symbol": ctx.symbol.name if located and ctx and ctx.symbol else None,
        "offset": ctx.offset if located and ctx else None,
        "verdict": {"registers": v.registers, "errno": v.errno, "optimized": v.optimized, "ftrace": v.ftrace},
        "findings": [
            {"rule": f.rule, "severity": str(f.severity), "message": f.message, "notes": list(f.notes)}
            for f in result.findings
        ],
    }


def to_dict(report: Report) -> dict[str, Any]:
    return {**_head(report), "probes": [_probe(r) for r in report]}


def _head(report: Report) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "probelint_version": __version__,
        "cpu_profile": report.cpu_profile,
        "images": [
            {"path": image.path, "name": image.name, "build_id": image.elf.build_id(), "version": image.version}
            for image in report.kernel.images
        ],
        # only when there is something to say: reports of validated kernels keep their shape
        **({"unvalidated": report.unvalidated} if report.unvalidated else {}),
    }


def _one_line_encoder() -> Callable[[Any], str]:
    """``json.dumps`` of one probe, its C encoder built once: ``dumps`` builds one per call, a
    third of encoding a short dict (a warm 1,000-probe run: ~3 ms). Where the C accelerator is
    missing, ``dumps`` itself."""
    if c_make_encoder is None:
        return json.dumps

    def unserializable(value: object) -> None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    encode = c_make_encoder(None, unserializable, encode_basestring_ascii, None, ": ", ", ", False, False, True)
    return lambda value: "".join(encode(value, 0))


def render(report: Report) -> str:
    """Indented at the top, one probe a line: readable and greppable, and the C encoder does the
    bulk (``indent`` throughout would run Python's encoder, 10 % of a warm 1,000-probe run). Each
    probe's dict lives only while it is encoded: kept for all, they were most of a large run's memory."""
    head = json.dumps(_head(report), indent=2)[:-2]  # without the closing "\n}"
    encode = _one_line_encoder()
    lines = ",\n".join(f"    {encode(_probe(r))}" for r in report)
    body = f"\n{lines}\n  " if len(report) else ""
    return f'{head},\n  "probes": [{body}]\n}}\n'
