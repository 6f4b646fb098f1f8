"""Small-cell suppression: nothing small shown, nothing hidden that a total would give away."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from board.suppress import SuppressionPolicy, suppress_group

UNDER5 = SuppressionPolicy.named("small_cell", 5)
CMS = SuppressionPolicy.named("cms")


@pytest.mark.parametrize(
    ("policy", "count", "small"),
    [
        (UNDER5, 0, False), (UNDER5, 1, True), (UNDER5, 4, True), (UNDER5, 5, False),
        (CMS, 0, False), (CMS, 1, True), (CMS, 10, True), (CMS, 11, False),
    ],
)
def test_policies_hide_small_non_zero_counts(policy: SuppressionPolicy, count: int, small: bool) -> None:
    assert policy.small(count) is small


def test_a_cell_is_small_when_its_complement_is_small() -> None:
    # 98 of 100 followed up: 2 people were not, a small count a reader could work out
    assert UNDER5.cell_small(98, 100)
    assert not UNDER5.cell_small(50, 100)
    assert not UNDER5.cell_small(0, 100)


def test_one_hidden_cell_beside_a_total_takes_a_second_one_with_it() -> None:
    cells = {"north": (3, 40), "south": (20, 60), "east": (12, 30)}
    hidden, hide_total = suppress_group(cells, (35, 130), UNDER5)
    assert hidden == {"north", "east"}  # east: the smallest denominator left
    assert not hide_total


def test_a_lone_cell_beside_a_total_hides_the_total() -> None:
    hidden, hide_total = suppress_group({"north": (3, 40), "empty": (0, 0)}, (3, 40), UNDER5)
    assert hidden == {"north"}
    assert hide_total


def test_unknown_policy_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'strict'"):
        SuppressionPolicy.named("strict")


cell = st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda t: (min(t), max(t)))


@settings(max_examples=400, deadline=None)
@given(
    cells=st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "unassigned"]), cell, min_size=1),
    policy=st.sampled_from([UNDER5, CMS]),
)
def test_no_small_cell_shown_and_none_derivable_from_the_total(
    cells: dict[str, tuple[int, int]], policy: SuppressionPolicy
) -> None:
    total = (sum(n for n, _ in cells.values()), sum(d for _, d in cells.values()))
    hidden, hide_total = suppress_group(cells, total, policy)
    shown = {k: v for k, v in cells.items() if k not in hidden}
    for num, den in shown.values():
        assert not policy.cell_small(num, den)
    if hide_total:
        # a hidden total must not be the sum of shown cells alone
        assert hidden
    else:
        assert not policy.cell_small(*total)
        # total less the shown cells is the sum of the hidden ones: it must not pin one down
        assert len(hidden) != 1
