"""`ccsclip ab judge`: mounted on the top-level app with `register(app)` (docs/ab.md).

Imports nothing heavy until the command runs, so `ccsclip` starts fast.

Exit codes: 0 promote, 1 roll back, 3 keep collecting, 2 bad input (a clear message).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ccsclip.ab.figures import EMBED_COSINE, EXCESS_SKEW, FIGURES, FIGURES_BY_KEY, TOP1_AGREEMENT
from ccsclip.errors import CcsclipError, InvalidInputError

if TYPE_CHECKING:
    from ccsclip.ab.sources import CounterSource, Window
    from ccsclip.ab.verdict import JudgeResult

ab_app = typer.Typer(
    help="A/B and canary decisions on the live figures (docs/ab.md).", no_args_is_help=True
)
err = Console(stderr=True)
# A pipe or a Job's log has no terminal width: wide enough for one table row per line there.
out = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)

_VERDICT_STYLE = {"pass": "green", "fail": "red", "undecided": "yellow"}


def _fmt(value: float | None, digits: int = 4) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


def render(result: JudgeResult, console: Console) -> None:
    """The verdict as a table: figure, control, candidate, difference with interval, verdict."""
    table = Table(
        title=f"{result.candidate} (candidate) against {result.control} (control)",
        caption=f"{result.source}; alpha {result.alpha:g}, minimum {result.min_samples} per arm",
    )
    columns = ("figure", "control", "candidate", "difference (harm) [interval] / margin", "verdict")
    for column in columns:
        table.add_column(escape(column), justify="left" if column == "figure" else "right")
    for f in result.figures:
        arms = []
        for arm in (f.control, f.candidate):
            if arm.full_model:
                arms.append(f"{_fmt(arm.mean, 2)} (full model)")
            else:
                arms.append(f"{_fmt(arm.mean)} (n={arm.n:g})")
        harm = f"{_fmt(f.harm)} [{_fmt(f.harm_low)}, {_fmt(f.harm_high)}] / {f.margin:g}"
        style = _VERDICT_STYLE[f.verdict]
        table.add_row(f.title, *arms, escape(harm), f"[{style}]{f.verdict}[/]")
    console.print(table)
    for f in result.figures:
        console.print(f"  {f.figure}: {f.reason}", markup=False, highlight=False)
    console.print(f"decision: [bold]{result.decision}[/] (exit {result.exit_code})")


def _source(
    prometheus: str | None, metrics_urls: list[str], window: Window | None
) -> CounterSource:
    from ccsclip.ab.sources import MetricsPageSource, PrometheusSource

    if bool(prometheus) == bool(metrics_urls):
        raise InvalidInputError("give either --prometheus URL or --metrics-url URL (repeatable)")
    if prometheus:
        assert window is not None
        return PrometheusSource(prometheus, window)
    return MetricsPageSource(metrics_urls)


@ab_app.command("judge")
def judge_command(
    control: Annotated[
        str, typer.Option(help="the control arm's label selector, e.g. '{profile=\"baseline\"}'")
    ],
    candidate: Annotated[
        str, typer.Option(help="the candidate arm's label selector, e.g. '{profile=\"search\"}'")
    ],
    prometheus: Annotated[
        str | None, typer.Option(help="a Prometheus server's base URL (production)")
    ] = None,
    metrics_url: Annotated[
        list[str] | None,
        typer.Option("--metrics-url", help="a server's /metrics URL, read directly (repeatable)"),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="Prometheus only: the experiment's window ending now or at --until"),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Prometheus only: window start (RFC 3339 or Unix s)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Prometheus only: window end (default now)")
    ] = None,
    alpha: Annotated[float, typer.Option(help="level of the whole decision")] = 0.05,
    min_samples: Annotated[
        int, typer.Option(help="observations per arm and figure before any verdict")
    ] = 200,
    margin_excess_maxskew: Annotated[
        float, typer.Option(help="how much more excess MaxSkew@k the candidate may show")
    ] = EXCESS_SKEW.default_margin,
    margin_top1_agreement: Annotated[
        float, typer.Option(help="how much lower top-1 agreement with the full model may be")
    ] = TOP1_AGREEMENT.default_margin,
    margin_embed_cosine: Annotated[
        float, typer.Option(help="how much lower the embedding cosine to the full model may be")
    ] = EMBED_COSINE.default_margin,
    figure: Annotated[
        list[str] | None,
        typer.Option(help="judge only these figures (repeatable): " + ", ".join(FIGURES_BY_KEY)),
    ] = None,
    full_model: Annotated[
        str,
        typer.Option(
            help="which arm serves the full model (its shadow figures are 1 by definition): "
            "control, candidate, both or none"
        ),
    ] = "control",
    every: Annotated[
        str | None,
        typer.Option(help="look again every DURATION until promote or roll back (canary Jobs)"),
    ] = None,
    deadline: Annotated[
        str | None, typer.Option(help="with --every: give up after DURATION (exit 3)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Compare a candidate arm with a control: promote (0), roll back (1), keep collecting (3)."""
    try:
        code = _run(
            control=control,
            candidate=candidate,
            prometheus=prometheus,
            metrics_urls=metrics_url or [],
            window=window,
            since=since,
            until=until,
            settings_args=(alpha, min_samples, full_model),
            margins={
                EXCESS_SKEW.key: margin_excess_maxskew,
                TOP1_AGREEMENT.key: margin_top1_agreement,
                EMBED_COSINE.key: margin_embed_cosine,
            },
            figure_keys=figure or [],
            every=every,
            deadline=deadline,
            as_json=as_json,
        )
    except CcsclipError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _run(
    *,
    control: str,
    candidate: str,
    prometheus: str | None,
    metrics_urls: list[str],
    window: str | None,
    since: str | None,
    until: str | None,
    settings_args: tuple[float, int, str],
    margins: dict[str, float],
    figure_keys: list[str],
    every: str | None,
    deadline: str | None,
    as_json: bool,
) -> int:
    """Validate everything first (exit 2 before any look), then look once or until decided."""
    # Imported here: `ccsclip` itself starts without httpx and pydantic models.
    from ccsclip.ab.selectors import parse_selector
    from ccsclip.ab.sources import Window, parse_duration
    from ccsclip.ab.verdict import FullModel, JudgeSettings, judge

    control_sel, candidate_sel = parse_selector(control), parse_selector(candidate)
    alpha, min_samples, full_model = settings_args
    if full_model not in {"control", "candidate", "both", "none"}:
        raise InvalidInputError(
            f"--full-model {full_model!r}: choose control, candidate, both or none"
        )
    settings = JudgeSettings(alpha, min_samples, margins, cast(FullModel, full_model))
    unknown = [k for k in figure_keys if k not in FIGURES_BY_KEY]
    if unknown:
        raise InvalidInputError(f"unknown --figure {unknown}: choose from {list(FIGURES_BY_KEY)}")
    figures = [FIGURES_BY_KEY[k] for k in figure_keys] or list(FIGURES)
    if metrics_urls and (window or since or until):
        raise InvalidInputError(
            "--window/--since/--until apply to --prometheus only: /metrics pages hold totals "
            "since each server started"
        )
    span = Window.resolve(window, since, until) if prometheus else None
    if deadline and not every:
        raise InvalidInputError("--deadline needs --every")
    pause = parse_duration(every) if every else None
    stop = time.monotonic() + parse_duration(deadline) if deadline else None
    while True:
        result = judge(_source(prometheus, metrics_urls, span), control_sel, candidate_sel,
                       figures, settings)  # fmt: skip
        done = result.decision != "keep collecting" or pause is None
        if done or (stop is not None and time.monotonic() + pause > stop):
            break
        err.print(f"keep collecting; next look in {every}", highlight=False)
        time.sleep(pause)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        render(result, out)
    return result.exit_code


def register(app: typer.Typer) -> None:
    """Add `ab` (with `judge`) to the top-level app."""
    app.add_typer(ab_app, name="ab")
