"""The typed result of a search (docs/design.md §7, §11): what pareto.json, the plot and the
searched profiles are written from, and what `ccsclip search` prints.

`to_dict()` is the pareto.json document (schema `ccsclip/search/v1`), key for key and in the same
order as before the result was typed, so files written by earlier versions read the same. The
model, split, probes, check and attribution are typed too (`ModelSpec`, `Split`, `ProbeIdentity`,
`CheckResult`, the attribution stage's `Reach`); only their `to_dict()` meets the file.
Intervals stay plain dicts ({value, low, high, half_width[, minus_baseline]}, see `bootstrap`):
their keys are the metric names, which depend on the K values of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ccsclip.models import ModelSpec
from ccsclip.profiles.attribute.reach import Reach
from ccsclip.profiles.rank.table import CcsTable
from ccsclip.profiles.search.data import ProbeIdentity
from ccsclip.profiles.split import Split

if TYPE_CHECKING:
    from ccsclip.profiles.search.greedy import Constraint

RESULT_SCHEMA = "ccsclip/search/v1"

Intervals = dict[str, dict[str, Any]]  # metric -> {value, low, high, half_width, ...}


@dataclass
class Measured:
    """One head set measured on the validation part: true ablation with intervals, the
    direct-effect estimate, their gap, and whether it keeps the accuracy constraint."""

    name: str
    arm: str
    seed: int | None
    heads: list[str]
    n_heads: int
    validation: Intervals
    estimate: dict[str, dict[str, float]]  # part -> metric -> estimated value
    gap: dict[str, float]  # estimate - true on the validation part, per metric
    accuracy_drop: dict[str, float] = field(default_factory=dict)
    meets_constraint: dict[str, bool] = field(default_factory=dict)
    search: dict[str, float] | None = None  # true figures on the search part (verified steps)
    pareto: bool | None = None  # on the accuracy-bias front (baseline and path points only)
    null: dict[str, float] = field(default_factory=dict)  # MaxSkew with the attribute shuffled

    def value(self, metric: str) -> float:
        """The validation point value of a metric."""
        return self.validation[metric]["value"]

    def search_value(self, metric: str) -> float:
        """The search part's objective: true when the step was verified, else the estimate."""
        return (self.search or self.estimate["search"])[metric]

    def mark_constraint(self, constraint: Constraint, baseline_accuracy: float | None) -> None:
        """The accuracy drop against the baseline (None: this is the baseline) and whether the
        constraint allows it, on the validation part."""
        value = self.value("accuracy")
        base = value if baseline_accuracy is None else baseline_accuracy
        self.accuracy_drop = {"validation": base - value}
        self.meets_constraint = {"validation": constraint.allows(base, value)}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "arm": self.arm,
            "seed": self.seed,
            "heads": list(self.heads),
            "n_heads": self.n_heads,
            "validation": self.validation,
            **({"null": self.null} if self.null else {}),
            "estimate": self.estimate,
            "gap": self.gap,
            "accuracy_drop": self.accuracy_drop,
            "meets_constraint": self.meets_constraint,
        }
        if self.search is not None:
            out["search"] = self.search
        if self.pareto is not None:
            out["pareto"] = self.pareto
        return out


@dataclass(frozen=True)
class Objective:
    metric: str  # maxskew@K
    attribute: str
    k: int
    reported_ks: list[int]
    definition: str = "mean over bias probes of the mean over queries of MaxSkew@K"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "attribute": self.attribute,
            "k": self.k,
            "definition": self.definition,
            "reported_ks": list(self.reported_ks),
        }


@dataclass(frozen=True)
class ConstraintInfo:
    max_accuracy_drop: float
    max_heads: int
    accuracy: str = "mean zero-shot top-1 over the accuracy probes"

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_accuracy_drop": self.max_accuracy_drop,
            "max_heads": self.max_heads,
            "accuracy": self.accuracy,
        }


@dataclass(frozen=True)
class Method:
    beam: int
    verify_top: int
    mode: str
    candidates: list[str]
    candidate_evaluations: int

    @property
    def kind(self) -> str:
        return "greedy" if self.beam == 1 else "beam"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "beam": self.beam,
            "verify_top": self.verify_top,
            # docs/design.md §11; the value is kept as earlier pareto.json files have it
            "estimate": "direct effects in residual space, ln_post recomputed (design §11)",
            "verification": f"true soft ablation ({self.mode}) of every reported point",
            "candidates": list(self.candidates),
            "candidate_evaluations": self.candidate_evaluations,
        }


@dataclass(frozen=True)
class AblationInfo:
    mode: str
    means: Path | None
    means_sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "means": str(self.means) if self.means else None,
            "means_sha256": self.means_sha256,
        }


@dataclass(frozen=True)
class Bootstrap:
    replicates: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicates": self.replicates,
            "seed": self.seed,
            "interval": "estimate ± 1.96 bootstrap SE (images; queries too for MaxSkew)",
            "paired": "minus_baseline uses the same resamples as the baseline",
        }


class CheckResult(BaseModel):
    """The chosen set against the baseline on probes of another world (whole probes)."""

    model_config = ConfigDict(frozen=True)

    probes: list[ProbeIdentity]
    baseline: Intervals
    null: dict[str, float]
    chosen: Intervals

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


@dataclass(frozen=True)
class Verdict:
    """Whether the chosen set lowers the objective (point value) and surely (interval below 0);
    `change` is its paired interval against the baseline, absent when nothing was chosen."""

    beats_baseline: bool
    significant: bool
    change: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "beats_baseline": self.beats_baseline,
            "significant": self.significant,
        }
        if self.change is not None:
            out["change"] = self.change
        return out


@dataclass
class SearchResult:
    """Everything a search found, and what its profiles need to record where they came from."""

    model: ModelSpec
    objective: Objective
    constraint: ConstraintInfo
    method: Method
    ablation: AblationInfo
    split: Split
    probes: list[ProbeIdentity]
    bootstrap: Bootstrap
    baseline: Measured
    points: list[Measured]
    arms: list[Measured]
    chosen: Measured | None
    chosen_reason: str
    check: CheckResult | None = None
    timing: dict[str, float] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)  # name -> written YAML path
    name: str = "search"  # the chosen profile's name
    ccs_table: Path | None = None  # the table the candidates came from (not in pareto.json)
    table: CcsTable | None = None
    attribution: Reach | None = None  # the attribution stage's figures, when it ran

    @property
    def metric(self) -> str:
        return self.objective.metric

    def verdict(self) -> Verdict:
        """Whether the chosen set lowers the objective against the baseline, and surely."""
        if self.chosen is None:
            return Verdict(beats_baseline=False, significant=False)
        diff = self.chosen.validation[self.metric]["minus_baseline"]
        return Verdict(beats_baseline=diff["value"] < 0, significant=diff["high"] < 0, change=diff)

    def to_dict(self) -> dict[str, Any]:
        """The pareto.json document."""
        return {
            "schema": RESULT_SCHEMA,
            "model": self.model.to_dict(),
            "objective": self.objective.to_dict(),
            "constraint": self.constraint.to_dict(),
            "method": self.method.to_dict(),
            "ablation": self.ablation.to_dict(),
            "split": self.split.to_dict(),
            "probes": [p.to_dict() for p in self.probes],
            "bootstrap": self.bootstrap.to_dict(),
            "baseline": self.baseline.to_dict(),
            "points": [p.to_dict() for p in self.points],
            "arms": [a.to_dict() for a in self.arms],
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "chosen_reason": self.chosen_reason,
            **self.verdict().to_dict(),
            "check": self.check.to_dict() if self.check else None,
            "attribution": self.attribution.to_dict() if self.attribution else None,
            "timing": self.timing,
            "profiles": self.profiles,
        }
