import pytest

from ccsclip.errors import InvalidInputError
from ccsclip.heads import parse_layers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("last:4", (8, 9, 10, 11)),
        ("all", tuple(range(12))),
        ("8-11", (8, 9, 10, 11)),
        ("11,8,8", (8, 11)),
    ],
)
def test_parse_layers(text, expected):
    assert parse_layers(text, 12) == expected


@pytest.mark.parametrize("text", ["last:13", "12", "a-b", "", "last:0", "-1"])
def test_parse_layers_rejects(text):
    with pytest.raises(InvalidInputError, match="layer"):
        parse_layers(text, 12)
