"""`ccs.json` (docs/design.md §7): the CCS table, its schema, and its CSV and heatmap companions."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ccsclip.errors import IntegrityError, NotFoundError
from ccsclip.fileio import atomic_path, atomic_write_json, atomic_write_text, sha256_file
from ccsclip.headref import head_label
from ccsclip.profiles.schema import ModelIdentity
from ccsclip.strict import Strict, read_json_model

SCHEMA = "ccsclip/ccs/v1"


class PoolIdentity(Strict):
    name: str
    sha256: str
    size: int
    tagged: bool


class DescriptionRow(Strict):
    text: str
    share: float
    std: float
    tags: list[str] | None = None
    consistent: bool


class HeadRow(Strict):
    layer: int = Field(ge=0)
    head: int = Field(ge=0)
    name: str
    concept: str
    ccs: int = Field(ge=0)
    descriptions: list[DescriptionRow]
    variance_share: float
    null_p: float | None = None
    above_null: bool | None = None
    bucket: Literal["high", "moderate", "low", "other"]


class Thresholds(Strict):
    high: int = 5
    moderate: int = 3
    low: int = 1


class CcsTable(Strict):
    schema_: Literal["ccsclip/ccs/v1"] = Field(SCHEMA, alias="schema")
    model: ModelIdentity
    layers: list[int]
    heads_per_layer: int
    n_images: int
    pool: PoolIdentity
    judge: dict[str, Any]
    m: int
    rank: int
    thresholds: Thresholds
    null: dict[str, Any] | None = None
    stats_sha256: str | None = None
    heads: list[HeadRow]

    def head(self, layer: int, head: int) -> HeadRow:
        for row in self.heads:
            if row.layer == layer and row.head == head:
                return row
        raise NotFoundError(
            f"head {head_label(layer, head)} is not in the CCS table (layers {self.layers})"
        )


def bucket(ccs: int, thresholds: Thresholds) -> str:
    if ccs >= thresholds.high:
        return "high"
    if ccs <= thresholds.low:
        return "low"
    if ccs == thresholds.moderate:
        return "moderate"
    return "other"


def write_table(out_dir: str | Path, table: CcsTable) -> Path:
    """ccs.json, ccs.csv and ccs_heatmap.png, each written atomically."""
    out = Path(out_dir)
    path = out / "ccs.json"
    atomic_write_json(path, table.model_dump(mode="json", by_alias=True))
    atomic_write_text(out / "ccs.csv", _csv(table))
    _heatmap(table, out / "ccs_heatmap.png")
    return path


def load_table(path: str | Path, weights_sha256: str | None = None) -> tuple[CcsTable, str]:
    """A validated CCS table and its file's sha256; refuses a table of another model."""
    path = Path(path)
    table = read_json_model(
        path,
        CcsTable,
        f"CCS table ({SCHEMA})",
        f"CCS table {str(path)!r} does not exist: run `ccsclip rank` first",
    )
    if weights_sha256 is not None and table.model.weights_sha256 != weights_sha256:
        raise IntegrityError(
            f"{path} was computed for {table.model.name!r} with other weights "
            f"({table.model.weights_sha256[:12]}…, this model has {weights_sha256[:12]}…): "
            "rank this model first"
        )
    return table, sha256_file(path)


def _csv(table: CcsTable) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "head",
            "layer",
            "index",
            "ccs",
            "concept",
            "bucket",
            "variance_share",
            "null_p",
            "descriptions",
        ]
    )
    for row in table.heads:
        writer.writerow(
            [
                row.name,
                row.layer,
                row.head,
                row.ccs,
                row.concept,
                row.bucket,
                f"{row.variance_share:.4f}",
                "" if row.null_p is None else f"{row.null_p:.3f}",
                " | ".join(d.text for d in row.descriptions),
            ]
        )
    return buffer.getvalue()


def _heatmap(table: CcsTable, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = table.layers
    grid = np.full((len(layers), table.heads_per_layer), np.nan)
    labels = {}
    for row in table.heads:
        grid[layers.index(row.layer), row.head] = row.ccs
        labels[(layers.index(row.layer), row.head)] = row.concept
    fig, ax = plt.subplots(figsize=(1.1 * table.heads_per_layer + 2, 0.8 * len(layers) + 1.5))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=table.m, aspect="auto")
    for (i, j), concept in labels.items():
        ax.text(
            j,
            i,
            f"{concept}\n{int(grid[i, j])}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if grid[i, j] < table.m * 0.6 else "black",
        )
    ax.set_xticks(range(table.heads_per_layer))
    ax.set_yticks(range(len(layers)), [f"L{layer}" for layer in layers])
    ax.set_xlabel("head")
    ax.set_title(f"CCS of {table.model.name} ({table.pool.name} pool, {table.judge.get('kind')})")
    fig.colorbar(image, ax=ax, label="CCS")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
