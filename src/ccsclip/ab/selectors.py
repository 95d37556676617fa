"""Arm selectors: Prometheus label matchers that say which series belong to an arm.

Grammar (a subset of PromQL's instant-vector selector, without the metric name; docs/ab.md):

    selector := "{" matcher ("," matcher)* [","] "}"
    matcher  := label op string
    label    := [a-zA-Z_][a-zA-Z0-9_]*        (not __name__: the judge picks the metrics)
    op       := "=" | "!=" | "=~" | "!~"
    string   := '"' ... '"' | "'" ... "'"     (backslash escapes: \\ \" \' \n \t)

Matching follows PromQL: an absent label reads as the empty string, and regular expressions
are anchored at both ends (`=~"base.*"` matches `baseline`, not `my-baseline`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ccsclip.errors import InvalidInputError

_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPS = ("=~", "!~", "!=", "=")  # longest first
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


@dataclass(frozen=True)
class Matcher:
    """One `label op "value"` term."""

    label: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def promql(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Selector:
    """A parsed arm selector: the conjunction of its matchers."""

    matchers: tuple[Matcher, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def promql(self, metric: str) -> str:
        """`metric{...}`: this selector applied to one metric name."""
        return metric + "{" + ",".join(m.promql() for m in self.matchers) + "}"

    def __str__(self) -> str:
        return "{" + ", ".join(m.promql() for m in self.matchers) + "}"


class _Reader:
    """A cursor over the selector text that reports errors with their position."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> InvalidInputError:
        return InvalidInputError(
            f"selector {self.text!r}: {what} at character {self.pos + 1}; expected the form "
            '{profile="baseline"} or {label=~"regex", other!="value"} (docs/ab.md)'
        )

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def label(self) -> str:
        self.skip_space()
        match = _LABEL.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a label name")
        self.pos = match.end()
        return match.group(0)

    def op(self) -> str:
        self.skip_space()
        for op in _OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        raise self.fail("expected one of = != =~ !~")

    def string(self) -> str:
        quote = self.peek()
        if quote not in {'"', "'"}:
            raise self.fail("expected a quoted value")
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char == "\\":
                escaped = self.text[self.pos + 1 : self.pos + 2]
                if escaped not in _ESCAPES:
                    raise self.fail(f"unknown escape \\{escaped}")
                out.append(_ESCAPES[escaped])
                self.pos += 2
                continue
            out.append(char)
            self.pos += 1
        raise self.fail("unterminated string")


def parse_selector(text: str) -> Selector:
    """Parse an arm selector; InvalidInputError (CLI exit 2) saying what and where if malformed."""
    reader = _Reader(text)
    reader.expect("{")
    matchers: list[Matcher] = []
    while reader.peek() != "}":
        label = reader.label()
        if label == "__name__":
            raise reader.fail("__name__ is not allowed (the judge chooses the metrics)")
        op = reader.op()
        value = reader.string()
        if op in {"=~", "!~"}:
            try:
                re.compile(value)
            except re.error as exc:
                raise reader.fail(f"bad regular expression {value!r} ({exc})") from None
        matchers.append(Matcher(label, op, value))
        if reader.peek() == ",":
            reader.pos += 1
        elif reader.peek() != "}":
            raise reader.fail("expected ',' or '}'")
    reader.expect("}")
    if reader.peek():
        raise reader.fail("unexpected text after '}'")
    if not matchers:
        raise reader.fail("an arm needs at least one label matcher ({} selects everything)")
    return Selector(tuple(matchers))
