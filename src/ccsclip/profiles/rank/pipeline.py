"""`ccsclip rank` as a library call: statistics -> TextSpan -> judge -> CCS table -> profiles."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccsclip.engine.image_files import list_images
from ccsclip.errors import InvalidInputError
from ccsclip.fileio import sha256_file
from ccsclip.heads.collect import collect_statistics
from ccsclip.heads.stats import (
    MEANS_FILE,
    HeadMoments,
    load_statistics,
    read_sidecar,
    save_statistics,
)
from ccsclip.images import listing_sha256
from ccsclip.models import LoadedModel
from ccsclip.profiles.rank.arms import ArmContext, build_arms
from ccsclip.profiles.rank.ccs import moment_spaces, null_ccs, null_summary, p_value, score_heads
from ccsclip.profiles.rank.embed import cache_file, clip_text_encoder, pool_embeddings
from ccsclip.profiles.rank.pool import DescriptionPool
from ccsclip.profiles.rank.stages import StageTimes
from ccsclip.profiles.rank.table import (
    CcsTable,
    DescriptionRow,
    HeadRow,
    PoolIdentity,
    Thresholds,
    bucket,
    write_table,
)
from ccsclip.profiles.schema import ModelIdentity, Profile, write_profile

log = logging.getLogger(__name__)


@dataclass
class RankOptions:
    layers: tuple[int, ...]
    judge: str = "auto"
    m: int = 5
    rank: int = 80
    thresholds: Thresholds = field(default_factory=Thresholds)
    null_samples: int = 100
    mode: str = "mean"
    arms: Sequence[str] = ("baseline", "high-ccs", "low-ccs", "low-matched", "random")
    seeds: Sequence[int] = (0, 1, 2)
    manual: Sequence[str] = ()
    batch_size: int = 32
    limit: int | None = None
    ignore_tags: Sequence[str] = ("other",)
    llm: dict[str, Any] = field(default_factory=dict)
    judge_encoder: str = "clip"


def make_judge(kind: str, loaded: LoadedModel, pool: DescriptionPool, options: RankOptions):
    """The judge named by `kind` ('auto': tags for tagged pools, else embedding)."""
    if kind == "auto":
        kind = "tags" if pool.is_tagged else "embedding"
    if kind == "tags":
        from ccsclip.profiles.rank.judges.tags import TagsJudge

        if not pool.is_tagged:
            raise InvalidInputError(
                f"pool {pool.name!r} has no tags: use --judge embedding or --judge llm"
            )
        return TagsJudge(ignore=options.ignore_tags)
    if kind == "embedding":
        from ccsclip.profiles.rank.judges.embedding import (
            EmbeddingJudge,
            load_vocabulary,
            minilm_encoder,
        )

        if options.judge_encoder == "minilm":
            return EmbeddingJudge(minilm_encoder(), load_vocabulary(), "all-MiniLM-L6-v2")
        if options.judge_encoder != "clip":
            raise InvalidInputError(
                f"unknown judge encoder {options.judge_encoder!r}: use clip or minilm"
            )
        return EmbeddingJudge(clip_text_encoder(loaded), load_vocabulary(), loaded.spec.name)
    if kind == "llm":
        from ccsclip.profiles.rank.judges.llm import LlmJudge

        return LlmJudge(**options.llm)
    raise InvalidInputError(f"unknown judge {kind!r}: use auto, tags, embedding or llm")


def _reusable(stats_dir: Path, loaded: LoadedModel, images: Path, layers: tuple[int, ...]) -> bool:
    """Existing statistics can be reused when model, images and layers all match."""
    if not (stats_dir / "stats.json").is_file():
        return False
    sidecar = read_sidecar(stats_dir)
    return (
        sidecar.get("weights_sha256") == loaded.spec.weights_sha256
        and sidecar.get("images", {}).get("listing_sha256")
        == listing_sha256(images, list_images(images))
        and tuple(sidecar.get("layers", ())) == layers
    )


def statistics(
    loaded: LoadedModel, images: Path, out: Path, options: RankOptions, progress: bool
) -> tuple[HeadMoments, dict[str, Any], bool]:
    stats_dir = out / "stats"
    resumed = _reusable(stats_dir, loaded, images, options.layers) and options.limit is None
    if not resumed:
        moments, means, meta = collect_statistics(
            loaded, images, options.layers, options.batch_size, False, options.limit, progress
        )
        save_statistics(stats_dir, moments, means, meta)
    moments, _, sidecar = load_statistics(stats_dir, loaded.spec.weights_sha256)
    return moments, sidecar, resumed


def build_table(
    loaded: LoadedModel,
    moments: HeadMoments,
    pool: DescriptionPool,
    judge,
    options: RankOptions,
    stats_sha256: str,
    progress: bool,
    stages: StageTimes | None = None,
) -> CcsTable:
    stages = stages or StageTimes()
    cached = ", cache file found" if cache_file(loaded, pool).is_file() else ""
    with stages.stage("pool embeddings", f"{len(pool)} descriptions{cached}"):
        texts = pool_embeddings(loaded, pool, progress=progress)
    heads = len(moments.layers) * moments.s.shape[1]
    with stages.stage("TextSpan + judge", f"{heads} heads, {judge.describe()['kind']}"):
        spaces = moment_spaces(moments, options.rank)
        scores = score_heads(moments, pool, texts, judge, options.m, options.rank, progress, spaces)
    null = []
    if options.null_samples:
        with stages.stage("null", f"{options.null_samples} random heads"):
            null = null_ccs(
                moments,
                pool,
                texts,
                judge,
                options.null_samples,
                options.m,
                options.rank,
                progress=progress,
                spaces=spaces,
            )
    rows = []
    for score in scores:
        p = p_value(score.ccs, null) if null else None
        rows.append(
            HeadRow(
                layer=score.layer,
                head=score.head,
                name=score.name,
                concept=score.concept,
                ccs=score.ccs,
                variance_share=score.variance_share,
                null_p=p,
                above_null=None if p is None else p < 0.05,
                bucket=bucket(score.ccs, options.thresholds),
                descriptions=[
                    DescriptionRow(
                        text=pool.descriptions[pick.index],
                        share=pick.share,
                        std=pick.std,
                        tags=sorted(pool.tags[pick.index]) if pool.tags else None,
                        consistent=ok,
                    )
                    for pick, ok in zip(score.picks, score.consistent, strict=True)
                ],
            )
        )
    spec = loaded.spec
    return CcsTable(
        model=ModelIdentity(
            name=spec.name, pretrained=spec.pretrained, weights_sha256=spec.weights_sha256
        ),
        layers=list(moments.layers),
        heads_per_layer=spec.heads,
        n_images=moments.n,
        pool=PoolIdentity(
            name=pool.name, sha256=pool.sha256, size=len(pool), tagged=pool.is_tagged
        ),
        judge=judge.describe(),
        m=options.m,
        rank=options.rank,
        thresholds=options.thresholds,
        null=null_summary(null, options.m) if null else None,
        stats_sha256=stats_sha256,
        heads=rows,
    )


def write_profiles(
    table: CcsTable, table_path: Path, means: Path | None, out_dir: Path, options: RankOptions
) -> list[tuple[Profile, Path]]:
    """One YAML per arm under out_dir; paths inside are relative to each profile file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    import os

    ctx = ArmContext(
        table=table,
        table_file=os.path.relpath(table_path, out_dir),
        table_sha256=sha256_file(table_path),
        means_file=os.path.relpath(means, out_dir) if means else None,
        means_sha256=sha256_file(means) if means else None,
        mode=options.mode,
    )
    profiles = build_arms(ctx, options.arms, options.seeds, options.manual)
    return [(p, write_profile(out_dir / f"{p.name}.yaml", p)) for p in profiles]


def rank(
    loaded: LoadedModel,
    images: Path,
    pool: DescriptionPool,
    out: Path,
    options: RankOptions,
    progress: bool = True,
    stages: StageTimes | None = None,
) -> dict[str, Any]:
    """The whole ranking in one run; resumes from statistics whose hashes match.

    `stages` collects wall and CPU time per stage (a new one when not given; returned).
    """
    stages = stages or StageTimes()
    with stages.stage("judge setup", options.judge):
        judge = make_judge(options.judge, loaded, pool, options)
    with stages.stage("statistics") as stage:
        moments, sidecar, resumed = statistics(loaded, images, out, options, progress)
        stage.note = f"{moments.n} images" + (", reused" if resumed else "")
    table = build_table(
        loaded,
        moments,
        pool,
        judge,
        options,
        sidecar["files"]["stats.safetensors"],
        progress,
        stages,
    )
    with stages.stage("write table + profiles"):
        table_path = write_table(out, table)
        profiles = write_profiles(
            table, table_path, out / "stats" / MEANS_FILE, out / "profiles", options
        )
    return {
        "table": table,
        "table_path": table_path,
        "profiles": profiles,
        "resumed": resumed,
        "stages": stages,
    }
