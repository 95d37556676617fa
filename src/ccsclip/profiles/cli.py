"""`ccsclip rank`, `ccsclip profiles` and `ccsclip evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ccsclip.cpu_threads import ThreadsOpt
from ccsclip.fileio import atomic_write_json

console = Console(stderr=True)
out = Console()

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="open_clip name, hf-hub:ID or local-dir:PATH")
]
PretrainedOpt = Annotated[
    str | None, typer.Option(help="open_clip tag, checkpoint path, 'embedded' or none (random)")
]
ArmsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--arm",
        help="arms to write (repeat): baseline, high-ccs, low-ccs, low-matched, "
        "random, concept:<label>, manual",
    ),
]


def _thresholds(high: int, moderate: int, low: int):
    from ccsclip.errors import InvalidInputError
    from ccsclip.profiles.rank.table import Thresholds

    if not low < moderate <= high:
        raise InvalidInputError(
            f"thresholds must satisfy low < moderate <= high, got {low}, {moderate}, {high}"
        )
    return Thresholds(high=high, moderate=moderate, low=low)


def _print_table(table) -> None:
    view = Table(
        title=f"CCS of {table.model.name} ({table.pool.name}, judge {table.judge['kind']})"
    )
    for column in ("head", "CCS", "concept", "p(null≥)", "var share", "top descriptions"):
        view.add_column(column)
    for row in sorted(table.heads, key=lambda r: (-r.ccs, -r.variance_share)):
        p = "" if row.null_p is None else f"{row.null_p:.2f}"
        texts = "; ".join(d.text for d in row.descriptions[:3])
        view.add_row(row.name, str(row.ccs), row.concept, p, f"{row.variance_share:.3f}", texts)
    out.print(view)
    if table.null:
        out.print(
            f"null CCS (random heads, same spectrum): mean {table.null['mean']:.2f}, "
            f"histogram 0..{table.m}: {table.null['histogram']}"
        )


def rank(
    model: ModelOpt,
    images: Annotated[Path, typer.Option(help="calibration images (ImageFolder or flat)")],
    pool: Annotated[str, typer.Option(help="pool file or shipped pool name (general)")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    pretrained: PretrainedOpt = None,
    layers: Annotated[
        str | None, typer.Option(help="default last:4 (or all layers if fewer)")
    ] = None,
    judge: Annotated[str, typer.Option(help="auto, tags, embedding or llm")] = "auto",
    m: Annotated[int, typer.Option(min=1, max=20, help="descriptions per head")] = 5,
    rank_r: Annotated[int, typer.Option("--rank", min=1, help="TextSpan's span rank r")] = 80,
    high: Annotated[int, typer.Option(help="CCS of a high head")] = 5,
    moderate: Annotated[int, typer.Option(help="CCS of a moderate head")] = 3,
    low: Annotated[int, typer.Option(help="largest CCS of a low head")] = 1,
    null_samples: Annotated[int, typer.Option(min=0, help="random heads for the null")] = 100,
    mode: Annotated[str, typer.Option(help="ablation mode of the profiles: mean or zero")] = "mean",
    arm: ArmsOpt = None,
    seeds: Annotated[
        list[int] | None, typer.Option("--seed", help="seeds of the random arm")
    ] = None,
    manual: Annotated[str, typer.Option(help="heads of the manual arm: L10H3,L11H0")] = "",
    probes: Annotated[
        list[Path] | None, typer.Option("--probe", help="evaluate on probe dir")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    judge_encoder: Annotated[
        str, typer.Option(help="embedding judge's encoder: clip (the model's text tower) or minilm")
    ] = "clip",
    llm_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL")] = None,
    llm_model: Annotated[str | None, typer.Option(help="chat model of the llm judge")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Statistics -> TextSpan -> judge -> CCS table -> profiles (-> evaluation) in one run."""
    from ccsclip.engine.image_files import list_images
    from ccsclip.heads.layers import parse_layers
    from ccsclip.models import load_model
    from ccsclip.profiles.rank.pipeline import RankOptions
    from ccsclip.profiles.rank.pipeline import rank as run_rank
    from ccsclip.profiles.rank.pool import load_pool

    thresholds = _thresholds(high, moderate, low)
    if mode not in ("mean", "zero"):
        raise typer.BadParameter(f"--mode must be mean or zero, got {mode!r}")
    from ccsclip.profiles.rank.stages import StageTimes

    list_images(images)
    stages = StageTimes()
    description_pool = load_pool(pool)
    with stages.stage("load model", model):
        loaded = load_model(model, pretrained)
    llm = {k: v for k, v in {"base_url": llm_base_url, "model": llm_model}.items() if v}
    options = RankOptions(
        layers=parse_layers(layers or f"last:{min(4, loaded.spec.layers)}", loaded.spec.layers),
        judge=judge,
        m=m,
        rank=rank_r,
        thresholds=thresholds,
        null_samples=null_samples,
        mode=mode,
        arms=arm or RankOptions.arms,
        seeds=seeds or [0, 1, 2],
        manual=[h for h in manual.split(",") if h.strip()],
        batch_size=batch_size,
        llm=llm,
    )
    result = run_rank(loaded, images, description_pool, out_dir, options, stages=stages)
    if result["resumed"]:
        console.print("reused statistics from", out_dir / "stats", "(hashes match)")
    _print_table(result["table"])
    console.print(
        f"wrote {result['table_path']}, ccs.csv, ccs_heatmap.png and "
        f"{len(result['profiles'])} profiles in {out_dir / 'profiles'}"
    )
    if probes:
        with stages.stage("evaluation", f"{len(result['profiles'])} profiles"):
            _evaluate(loaded, result["profiles"], probes, out_dir)
    out.print(stages.table(f"ccsclip rank {model}"))
    console.print(f"stage times in {stages.write(out_dir)}")


def profiles(
    ccs: Annotated[Path, typer.Option(help="ccs.json written by `ccsclip rank`")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the profile YAMLs")],
    means: Annotated[Path | None, typer.Option(help="means.safetensors (mean mode)")] = None,
    mode: Annotated[str, typer.Option(help="mean or zero")] = "mean",
    arm: ArmsOpt = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed")] = None,
    manual: Annotated[str, typer.Option(help="heads of the manual arm: L10H3,L11H0")] = "",
    high: Annotated[int | None, typer.Option(help="override the table's thresholds")] = None,
    moderate: Annotated[int | None, typer.Option()] = None,
    low: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Write pruning profiles (arms) from an existing CCS table."""
    from ccsclip.errors import InvalidInputError
    from ccsclip.profiles.rank.pipeline import RankOptions, write_profiles
    from ccsclip.profiles.rank.table import bucket, load_table

    table, _ = load_table(ccs)
    t = table.thresholds
    thresholds = _thresholds(
        high if high is not None else t.high,
        moderate if moderate is not None else t.moderate,
        low if low is not None else t.low,
    )
    table = table.model_copy(update={"thresholds": thresholds})
    for row in table.heads:
        row.bucket = bucket(row.ccs, thresholds)
    if mode == "mean" and means is None:
        raise InvalidInputError("mean-mode profiles need --means (the stats folder's means file)")
    options = RankOptions(
        layers=tuple(table.layers),
        mode=mode,
        arms=arm or RankOptions.arms,
        seeds=seeds or [0, 1, 2],
        manual=[h for h in manual.split(",") if h],
    )
    written = write_profiles(table, ccs, means if mode == "mean" else None, out_dir, options)
    for profile, path in written:
        out.print(f"{path}: {len(profile.heads)} heads ({profile.selection.arm})")


def evaluate(
    model: ModelOpt,
    profile_files: Annotated[list[Path], typer.Option("--profile", help="profile YAML (repeat)")],
    probes: Annotated[list[Path], typer.Option("--probe", help="probe folder (repeat)")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for evaluation.json + plot")],
    pretrained: PretrainedOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Zero-shot accuracy and MaxSkew of each profile (soft pruning), with the trade-off plot."""
    from ccsclip.models import load_model
    from ccsclip.profiles.schema import load_profile

    loaded = load_model(model, pretrained)
    entries = [(load_profile(path), path) for path in profile_files]
    _evaluate(loaded, entries, probes, out_dir)


def _evaluate(loaded, entries, probes, out_dir: Path) -> None:
    from ccsclip.profiles.evaluate import evaluate_profiles, plot_tradeoff

    results = evaluate_profiles(loaded, entries, probes)
    atomic_write_json(out_dir / "evaluation.json", results.to_dict())
    plot_tradeoff(results, out_dir / "tradeoff.png")
    view = Table(title="soft-pruned evaluation per arm")
    for column in ("arm", "profiles", "heads", "accuracy", "MaxSkew (mean over queries; null)"):
        view.add_column(column)
    for arm, row in results.arms.items():
        acc = (
            ""
            if row.accuracy_mean is None
            else (f"{row.accuracy_mean:.3f} ± {row.accuracy_std:.3f}")
        )
        nulls = row.maxskew_null_mean
        skew = ", ".join(f"{k} {v:.2f} ({nulls[k]:.2f})" for k, v in row.maxskew_mean.items())
        view.add_row(arm, str(row.profiles), str(row.heads), acc, skew)
    out.print(view)
    console.print(f"wrote {out_dir / 'evaluation.json'} and {out_dir / 'tradeoff.png'}")


def register(app: typer.Typer) -> None:
    app.command()(rank)
    app.command()(profiles)
    app.command()(evaluate)
    from ccsclip.profiles.attribute.cli import attribute
    from ccsclip.profiles.search.cli import search

    app.command()(search)
    app.command()(attribute)
