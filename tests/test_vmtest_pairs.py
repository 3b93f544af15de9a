"""Probe interaction in the booted kernel: pairs through a jump window, in both orders and at once."""

from __future__ import annotations

import pytest

import probelint
from probelint.vmtest.pairs import ORDERS, draw_pairs, render_pairs, run_pairs


@pytest.mark.kernel
def test_pairs_are_drawn_inside_and_just_past_the_window(debian_kernel):
    pairs = draw_pairs(debian_kernel, 6, seed=3)
    assert {p.kind for p in pairs} == {"inside", "outside"}
    for pair in pairs:
        a, b = probelint.check(debian_kernel, [pair.a, pair.b])
        window_end = a.context.window()[-1].end
        inside = a.context.address < b.context.address < window_end
        assert inside == (pair.kind == "inside")
        assert a.verdict.optimized == (pair.kind == "outside")  # B in the window keeps A an int3 probe


@pytest.mark.kernel
@pytest.mark.vm
def test_pairs_agree_with_the_booted_kernel(debian_kernel):
    from probelint.vmtest.download import HarnessUnavailable
    from probelint.vmtest.runner import GuestBootError

    pairs = draw_pairs(debian_kernel, 8, seed=11)
    try:
        outcomes = run_pairs(pairs, debian_kernel, cpu="qemu64")
    except (HarnessUnavailable, GuestBootError) as exc:
        pytest.skip(f"kernel VM harness unavailable: {exc}")
    print(render_pairs(outcomes))
    assert len(outcomes) == len(pairs) * len(ORDERS)
    assert all(o.agrees for o in outcomes), render_pairs(outcomes)
