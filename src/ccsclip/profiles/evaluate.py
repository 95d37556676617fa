"""The paper's experiments with soft pruning: accuracy and bias of each profile, and the plot.

`evaluate_profiles` returns a typed `Evaluation`; its `to_dict()` is evaluation.json, key for key
as before it was typed, and `Evaluation.model_validate(json)` reads one back. Each probe's figures
stay in the form `score_probe` gives them (shared with the torch-free engine) and are read here
through `AccuracyScore` and `BiasScore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from ccsclip.heads.ablation import Ablation, ablated
from ccsclip.heads.stats import load_means
from ccsclip.models import LoadedModel
from ccsclip.probeset import load_probe
from ccsclip.profiles.probe_eval import prepare_probe, score_probe
from ccsclip.profiles.schema import Profile, means_path


def profile_ablation(profile: Profile, profile_path: str | Path, loaded: LoadedModel) -> Ablation:
    """The soft-pruning ablation of a profile, checked against the loaded model."""
    spec = loaded.spec
    profile.check_against(spec.layers, spec.heads, spec.weights_sha256)
    path = means_path(profile, profile_path)
    means = load_means(path, profile.ablation.means_sha256) if path else None
    return Ablation.of(profile.head_pairs(), profile.ablation.mode, means)


class _Typed(BaseModel):
    model_config = ConfigDict(frozen=True, protected_namespaces=())

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class AccuracyScore(_Typed):
    """An accuracy probe's zero-shot top-1 under one profile."""

    probe: str
    kind: Literal["accuracy"]
    n_images: int
    accuracy: float
    chance: float


class SkewScore(_Typed):
    """MaxSkew@K of one attribute over a bias probe's queries (`ccsclip.fairness.skew_table`)."""

    mean: float
    sum: float
    per_query: dict[str, float]
    random_ranking_mean: float
    null_mean: float  # the attribute shuffled within each query's relevant images
    relevance: str | None


class BiasScore(_Typed):
    """A bias probe's MaxSkew per `attribute@K` under one profile."""

    probe: str
    kind: Literal["bias"]
    n_images: int
    n_queries: int
    maxskew: dict[str, SkewScore]


ProbeScore = Annotated[AccuracyScore | BiasScore, Field(discriminator="kind")]


class Summary(_Typed):
    """One profile over all probes: mean accuracy, and MaxSkew with its null per probe:key."""

    mean_accuracy: float | None
    maxskew: dict[str, float]
    maxskew_null: dict[str, float]

    @classmethod
    def of(cls, results: Sequence[AccuracyScore | BiasScore]) -> Summary:
        accuracies = [r.accuracy for r in results if isinstance(r, AccuracyScore)]
        bias = [r for r in results if isinstance(r, BiasScore)]
        return cls(
            mean_accuracy=float(np.mean(accuracies)) if accuracies else None,
            maxskew={f"{r.probe}:{k}": v.mean for r in bias for k, v in r.maxskew.items()},
            maxskew_null={
                f"{r.probe}:{k}": v.null_mean for r in bias for k, v in r.maxskew.items()
            },
        )


class ProfileEvaluation(_Typed):
    """One profile's figures on every probe."""

    arm: str
    seed: int | None
    heads: list[str]
    mode: str
    results: list[ProbeScore]
    summary: Summary


class ArmSummary(_Typed):
    """Per arm: mean and spread over its profiles (the random arm has one per seed)."""

    profiles: int
    heads: int
    accuracy_mean: float | None
    accuracy_std: float | None
    maxskew_mean: dict[str, float]
    maxskew_std: dict[str, float]
    maxskew_null_mean: dict[str, float]


class Evaluation(_Typed):
    """evaluation.json: every profile on every probe, and the per-arm summary."""

    model: dict[str, Any]  # ModelSpec.to_dict()
    probes: list[str]
    profiles: dict[str, ProfileEvaluation]
    arms: dict[str, ArmSummary]


def evaluate_profiles(
    loaded: LoadedModel,
    profiles: Sequence[tuple[Profile, Path]],
    probe_dirs: Sequence[str | Path],
    progress: bool = True,
) -> Evaluation:
    """Score every probe under every profile (probes are prepared once)."""
    model = loaded.model
    probes = [load_probe(directory) for directory in probe_dirs]
    prepared = [prepare_probe(model, loaded.tokenizer, loaded.preprocess, p) for p in probes]
    evaluated: dict[str, ProfileEvaluation] = {}
    for profile, path in tqdm(profiles, desc="evaluate", unit="profile", disable=not progress):
        with ablated(model, profile_ablation(profile, path, loaded)):
            results = [_score(score_probe(model, p)) for p in prepared]
        evaluated[profile.name] = ProfileEvaluation(
            arm=profile.selection.arm,
            seed=profile.selection.seed,
            heads=[h.name for h in profile.heads],
            mode=profile.ablation.mode,
            results=results,
            summary=Summary.of(results),
        )
    return Evaluation(
        model=loaded.spec.to_dict(),
        probes=[p.name for p in probes],
        profiles=evaluated,
        arms=arm_summary(evaluated),
    )


def _score(raw: dict[str, Any]) -> AccuracyScore | BiasScore:
    return AccuracyScore(**raw) if raw["kind"] == "accuracy" else BiasScore(**raw)


def arm_summary(profiles: dict[str, ProfileEvaluation]) -> dict[str, ArmSummary]:
    """Per arm: mean and spread over its profiles (the random arm has one per seed)."""
    arms: dict[str, list[ProfileEvaluation]] = {}
    for entry in profiles.values():
        arms.setdefault(entry.arm, []).append(entry)
    summary = {}
    for arm, entries in arms.items():
        accuracy = [e.summary.mean_accuracy for e in entries]
        keys = entries[0].summary.maxskew.keys()
        skews = {k: [e.summary.maxskew[k] for e in entries] for k in keys}
        known = None not in accuracy
        summary[arm] = ArmSummary(
            profiles=len(entries),
            heads=len(entries[0].heads),
            accuracy_mean=float(np.mean(accuracy)) if known else None,
            accuracy_std=float(np.std(accuracy)) if known else None,
            maxskew_mean={k: float(np.mean(v)) for k, v in skews.items()},
            maxskew_std={k: float(np.std(v)) for k, v in skews.items()},
            maxskew_null_mean={
                k: float(np.mean([e.summary.maxskew_null[k] for e in entries])) for k in keys
            },
        )
    return summary


def plot_tradeoff(results: Evaluation, path: Path) -> None:
    """Accuracy against MaxSkew, one point per arm (random: mean with a std error bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ccsclip.fileio import atomic_path

    arms = {a: r for a, r in results.arms.items() if r.accuracy_mean is not None}
    keys = [k for r in arms.values() for k in r.maxskew_mean]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for index, (arm, row) in enumerate(arms.items()):
        label = f"{arm} ({row.heads} heads)"
        if keys:
            x, xerr = row.maxskew_mean[keys[0]], row.maxskew_std[keys[0]]
        else:  # no bias probe: one column per arm
            x, xerr = index, 0.0
        ax.errorbar(
            x,
            row.accuracy_mean,
            xerr=xerr,
            yerr=row.accuracy_std,
            fmt="o",
            capsize=3,
            label=label,
        )
    ax.set_xlabel(f"mean MaxSkew ({keys[0]})" if keys else "arm")
    ax.set_ylabel("mean zero-shot accuracy")
    ax.set_title("accuracy against bias, per pruning arm")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
