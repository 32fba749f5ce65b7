"""Default thread count: idle physical cores, rounded down, at least one."""

from __future__ import annotations

import pytest
import torch

from common import threads


@pytest.mark.parametrize(("cores", "load", "expected"), [
    (2, 0.0, 2), (2, 0.3, 1), (2, 0.9, 1), (2, 5.0, 1), (16, 3.2, 12), (16, 0.0, 16), (1, 0.0, 1),
    (4, -1.0, 4),  # a bogus negative load adds no cores
])
def test_choose_threads(cores, load, expected):
    assert threads.choose_threads(cores, load) == expected


def test_apply_sets_torch_threads_and_refuses_zero():
    before = torch.get_num_threads()
    try:
        line = threads.apply(1)
        assert torch.get_num_threads() == 1 and line.startswith("1 torch thread (set by --threads")
        line = threads.apply()
        n = torch.get_num_threads()
        assert 1 <= n <= threads.usable_cores() and line.startswith(f"{n} torch thread")
        with pytest.raises(ValueError, match="--threads"):
            threads.apply(0)
    finally:
        torch.set_num_threads(before)
