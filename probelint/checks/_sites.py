"""Shared shape of the "probe sits on a patched site" registration rules (KP107-KP109)."""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext


def site_hit(ctx: ProbeContext, site: int | None, what: str) -> Iterator[Hit]:
    if site is not None:
        assert ctx.image is not None
        yield Hit(f"{ctx.where()} is on a {what} at {ctx.image.describe(site)}: the kernel patches this text at "
                  f"run time and refuses probes on it")
