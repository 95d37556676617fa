"""The arm selector grammar (ccsclip.ab.selectors; docs/ab.md, "Selecting an arm")."""

from __future__ import annotations

import pytest

from ccsclip.ab.selectors import Matcher, parse_selector
from ccsclip.errors import InvalidInputError


def test_parses_every_operator_and_both_quotes():
    sel = parse_selector(
        """{ profile = "baseline", pod!='p-1' ,version=~"0\\\\.1\\\\..*", gallery!~"tmp.*", }"""
    )
    assert sel.matchers == (
        Matcher("profile", "=", "baseline"),
        Matcher("pod", "!=", "p-1"),
        Matcher("version", "=~", "0\\.1\\..*"),
        Matcher("gallery", "!~", "tmp.*"),
    )


def test_escapes_inside_strings():
    (matcher,) = parse_selector(r'{note="a \"quoted\" \\ word\n"}').matchers
    assert matcher.value == 'a "quoted" \\ word\n'


def test_matching_follows_promql():
    sel = parse_selector('{profile=~"base.*", deployment!="old"}')
    assert sel.matches({"profile": "baseline"})  # absent deployment reads as ""
    assert not sel.matches({"profile": "my-baseline"})  # regexes are anchored
    assert not sel.matches({"profile": "baseline", "deployment": "old"})
    assert parse_selector('{gallery=""}').matches({"profile": "x"})
    assert not parse_selector('{gallery!~".*"}').matches({})
    assert parse_selector('{profile!~"search|high-ccs"}').matches({"profile": "baseline"})


def test_promql_rendering_round_trips():
    sel = parse_selector(r'{profile="base\"line", version=~"1\\..*"}')
    rendered = sel.promql("ccsclip_x_total")
    assert rendered == r'ccsclip_x_total{profile="base\"line",version=~"1\\..*"}'
    assert parse_selector(rendered.removeprefix("ccsclip_x_total")) == sel
    assert parse_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("profile=baseline", "expected '{'"),
        ('{profile="baseline"', "expected ',' or '}'"),
        ("{profile=baseline}", "expected a quoted value"),
        ('{profile=="baseline"}', "expected a quoted value"),
        ('{profile~"b"}', "expected one of"),
        ('{1profile="b"}', "expected a label name"),
        ('{profile="b" version="1"}', "expected ',' or '}'"),
        ('{profile="b"} extra', "unexpected text"),
        ('{profile="b}', "unterminated string"),
        (r'{profile="\q"}', "unknown escape"),
        ('{profile=~"("}', "bad regular expression"),
        ('{__name__="x"}', "__name__ is not allowed"),
        ("{}", "at least one label matcher"),
        ("", "expected '{'"),
    ],
)
def test_malformed_selectors_say_what_and_where(text, complaint):
    with pytest.raises(InvalidInputError) as caught:
        parse_selector(text)
    message = str(caught.value)
    assert complaint in message
    assert "at character" in message and "docs/ab.md" in message
