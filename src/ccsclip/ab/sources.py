"""Where the judge reads the counters: a Prometheus server's HTTP API, or /metrics pages.

Both answer one question: the sum, over every series that an arm's selector matches, of one
counter (None when no series matches). Prometheus sums the counters' increase over the
experiment's window (resets handled by `increase`); /metrics pages give the totals since each
server started, so the window there is the servers' lifetime.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from ccsclip.ab.selectors import Selector
from ccsclip.errors import InvalidInputError

TIMEOUT_S = 30.0
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class CounterSource(Protocol):
    """Sums counters over the series an arm selects."""

    def describe(self) -> str: ...

    def counter_sum(self, selector: Selector, name: str) -> float | None: ...


def parse_duration(text: str) -> float:
    """A Prometheus duration (`90m`, `2h`, `1h30m`) in seconds; InvalidInputError otherwise."""
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not text or pos != len(text) or total <= 0:
        raise InvalidInputError(
            f"bad duration {text!r}: write a positive Prometheus duration such as 30m, 2h or 1h30m"
        )
    return total


def parse_time(text: str) -> float:
    """RFC 3339 (`2026-01-31T12:00:00Z`) or Unix seconds, as Unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"bad time {text!r}: write RFC 3339 (2026-01-31T12:00:00Z) or Unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class Window:
    """The experiment's time window: `range_s` seconds ending at `end` (Unix s; None: now)."""

    range_s: float
    end: float | None

    @classmethod
    def resolve(cls, window: str | None, since: str | None, until: str | None) -> Window:
        if window and since:
            raise InvalidInputError("give either --window or --since, not both")
        end = parse_time(until) if until else None
        if since:
            start = parse_time(since)
            stop = end if end is not None else datetime.now(UTC).timestamp()
            if stop <= start:
                raise InvalidInputError(f"--since {since} is not before --until {until or 'now'}")
            return cls(stop - start, end)
        return cls(parse_duration(window or "2h"), end)

    def describe(self) -> str:
        end = "now" if self.end is None else datetime.fromtimestamp(self.end, UTC).isoformat()
        return f"{self.range_s:g}s ending {end}"


class PrometheusSource:
    """Counter increases over the window, summed by Prometheus (`sum(increase(...))`)."""

    def __init__(self, url: str, window: Window, client: httpx.Client | None = None) -> None:
        if urlsplit(url).scheme not in {"http", "https"}:
            raise InvalidInputError(f"--prometheus {url!r}: expected an http(s):// URL")
        self.url = url.rstrip("/")
        self.window = window
        # One evaluation time for every query of a look: increase() extrapolates to it, so
        # the four counters of a figure must share it for their ratios to be exact.
        self.at = window.end if window.end is not None else datetime.now(UTC).timestamp()
        self.client = client or httpx.Client(timeout=TIMEOUT_S)

    def describe(self) -> str:
        return f"Prometheus {self.url}, window {self.window.describe()}"

    def query(self, promql: str) -> list[dict]:
        params = {"query": promql, "time": f"{self.at:.3f}"}
        try:
            reply = self.client.get(f"{self.url}/api/v1/query", params=params)
        except httpx.HTTPError as exc:
            raise InvalidInputError(
                f"cannot reach Prometheus at {self.url} ({exc}): check --prometheus"
            ) from None
        try:
            body = reply.json()
        except ValueError:
            raise InvalidInputError(
                f"{self.url} answered {reply.status_code} without Prometheus JSON: is it the "
                "Prometheus server's base URL?"
            ) from None
        if body.get("status") != "success":
            raise InvalidInputError(f"Prometheus refused {promql!r}: {body.get('error')}")
        return body["data"]["result"]

    def counter_sum(self, selector: Selector, name: str) -> float | None:
        seconds = max(1, math.ceil(self.window.range_s))
        result = self.query(f"sum(increase({selector.promql(name)}[{seconds}s]))")
        if not result:
            return None
        return float(result[0]["value"][1])


@dataclass(frozen=True)
class Sample:
    """One series of a scraped page: name, labels (with `instance`) and value."""

    name: str
    labels: dict[str, str]
    value: float


def parse_page(text: str, instance: str) -> list[Sample]:
    """The samples of a Prometheus text page, each labelled `instance` as a scrape would."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = {"instance": instance, **sample.labels}
                samples.append(Sample(sample.name, labels, float(sample.value)))
    except ValueError as exc:
        raise InvalidInputError(f"{instance}: not a Prometheus text page ({exc})") from None
    return samples


class MetricsPageSource:
    """The servers' own /metrics pages, read once; totals since each server started."""

    def __init__(self, urls: Sequence[str], client: httpx.Client | None = None) -> None:
        if not urls:
            raise InvalidInputError("give at least one --metrics-url")
        self.urls = list(urls)
        self.samples: list[Sample] = []
        with client or httpx.Client(timeout=TIMEOUT_S) as http:
            for url in self.urls:
                self.samples.extend(_read_page(http, url))

    def describe(self) -> str:
        return "/metrics " + ", ".join(self.urls) + " (totals since each server started)"

    def counter_sum(self, selector: Selector, name: str) -> float | None:
        values = _matching(self.samples, selector, name)
        return math.fsum(values) if values else None


def _read_page(http: httpx.Client, url: str) -> list[Sample]:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise InvalidInputError(f"--metrics-url {url!r}: expected an http(s):// URL")
    try:
        reply = http.get(url)
    except httpx.HTTPError as exc:
        raise InvalidInputError(f"cannot read {url} ({exc}): is the server up?") from None
    if reply.status_code != 200:
        raise InvalidInputError(f"{url} answered {reply.status_code}, not a metrics page")
    return parse_page(reply.text, parts.netloc)


def _matching(samples: Iterable[Sample], selector: Selector, name: str) -> list[float]:
    return [s.value for s in samples if s.name == name and selector.matches(s.labels)]
