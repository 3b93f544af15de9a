"""Tetragon TracingPolicy YAML (``apiVersion: cilium.io/...``, ``kind: TracingPolicy`` or
``TracingPolicyNamespaced``): each ``spec.kprobes[].call``, located at its YAML node.

``syscall: true`` names a system call: Tetragon (pkg/arch AddSyscallPrefix) prefixes the call with
the arch's ``__x64_`` unless it has it already (``sys_write`` -> ``__x64_sys_write``);
``return: true`` adds a return probe. A ``list:NAME`` call (the policy's ``spec.lists``) is not
checked (KP407). Tetragon attaches through the kprobe PMU (cilium/ebpf), kprobe_events' path."""

from __future__ import annotations

import re
from collections.abc import Iterator

import yaml

from probelint.findings import Location
from probelint.readers.spec import Origin, Parsed, ParseProblem, ProbeSpec, parse_target, with_origin

__all__ = ["looks_like_policy", "read"]

ARCH_PREFIX = "__x64_"  # Tetragon's prefix for amd64, the arch probelint models
_ARCH_PREFIXES = ("__x64_", "__arm64_", "__ia32_")
_KINDS = ("TracingPolicy", "TracingPolicyNamespaced")
_HEADER = re.compile(r"^apiVersion:\s*[\"']?cilium\.io/", re.M)
_KIND = re.compile(r"^kind:\s*[\"']?TracingPolicy(?:Namespaced)?[\"']?\s*$", re.M)

_TETRAGON = Origin(tool="Tetragon")


def looks_like_policy(text: str) -> bool:
    return _HEADER.search(text) is not None and _KIND.search(text) is not None


def read(text: str, file: str) -> Iterator[Parsed]:
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        yield ParseProblem(text.split("\n")[where.line - 1].strip()[:60], where,
                           f"not YAML: {getattr(exc, 'problem', None) or exc}")
        return
    for document in documents:
        top = _mapping(document)
        if _scalar(top.get("apiVersion"), "").startswith("cilium.io/") and _scalar(top.get("kind"), "") in _KINDS:
            kprobes = _mapping(top.get("spec")).get("kprobes")
            if isinstance(kprobes, yaml.SequenceNode):
                for entry in kprobes.value:
                    yield from _kprobe(_mapping(entry), file)


def _mapping(node: yaml.Node | None) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: value for key, value in node.value if isinstance(key, yaml.ScalarNode)}


def _scalar(node: yaml.Node | None, default: str) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) else default


def _true(node: yaml.Node | None) -> bool:
    return _scalar(node, "false").lower() in ("true", "yes", "on")  # YAML 1.1 booleans, as Go's yaml reads them


def _kprobe(entry: dict[str, yaml.Node], file: str) -> Iterator[Parsed]:
    call = entry.get("call")
    if not isinstance(call, yaml.ScalarNode):
        return
    mark = call.start_mark
    quoted = 1 if call.style in ('"', "'") else 0
    where = Location(file, mark.line + 1, mark.column + 1 + quoted)
    name = call.value
    if name.startswith("list:"):
        yield with_origin(ParseProblem(name, where, "Tetragon call lists (spec.lists) are not checked",
                                       unsupported=True), _TETRAGON)
        return
    target = name
    if _true(entry.get("syscall")) and not name.startswith(_ARCH_PREFIXES):
        target = ARCH_PREFIX + name
    spec = parse_target(target, where, is_return=_true(entry.get("return")))
    if isinstance(spec, ProbeSpec) and target != name:
        spec = spec._replace(text=f"{name} -> {target}")
    yield with_origin(spec, _TETRAGON)
