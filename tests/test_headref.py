"""The one head reference: label, parse and the check against a model's shape."""

from __future__ import annotations

import pytest

from ccsclip.errors import InvalidInputError
from ccsclip.headref import Head, head_label
from ccsclip.profiles.schema import parse_head_names


def test_label_and_parse_round_trip():
    head = Head(10, 3)
    assert head.label == "L10H3" == head_label(10, 3)
    assert Head.parse(" L10H3 ") == head == (10, 3)
    with pytest.raises(ValueError, match="L<layer>H<head>"):
        Head.parse("10.3")


def test_check_exists_names_the_valid_range():
    assert Head(5, 7).check_exists(6, 8) == Head(5, 7)
    with pytest.raises(InvalidInputError, match=r"L6H0 does not exist in m: layers are 0\.\.5"):
        Head(6, 0).check_exists(6, 8, "m")
    with pytest.raises(InvalidInputError, match=r"heads 0\.\.7"):
        Head(0, 8).check_exists(6, 8)


def test_profile_head_names_are_heads_and_bad_ones_are_invalid_input():
    assert parse_head_names(["L1H2", "L0H0"]) == [Head(1, 2), Head(0, 0)]
    with pytest.raises(InvalidInputError, match="bad head name"):
        parse_head_names(["L1-H2"])
