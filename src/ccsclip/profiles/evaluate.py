"""The paper's experiments with soft pruning: accuracy and bias of each profile, and the plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
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


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    accuracies = [r["accuracy"] for r in results if r["kind"] == "accuracy"]
    skews = {
        f"{r['probe']}:{key}": value["mean"]
        for r in results
        if r["kind"] == "bias"
        for key, value in r["maxskew"].items()
    }
    nulls = {  # attribute shuffled within each query's relevant images (ccsclip.fairness)
        f"{r['probe']}:{key}": value["null_mean"]
        for r in results
        if r["kind"] == "bias"
        for key, value in r["maxskew"].items()
    }
    return {
        "mean_accuracy": float(np.mean(accuracies)) if accuracies else None,
        "maxskew": skews,
        "maxskew_null": nulls,
    }


def evaluate_profiles(
    loaded: LoadedModel,
    profiles: Sequence[tuple[Profile, Path]],
    probe_dirs: Sequence[str | Path],
    progress: bool = True,
) -> dict[str, Any]:
    """Score every probe under every profile (probes are prepared once)."""
    model = loaded.model
    probes = [load_probe(directory) for directory in probe_dirs]
    prepared = [prepare_probe(model, loaded.tokenizer, loaded.preprocess, p) for p in probes]
    out: dict[str, Any] = {
        "model": loaded.spec.to_dict(),
        "probes": [p.name for p in probes],
        "profiles": {},
    }
    for profile, path in tqdm(profiles, desc="evaluate", unit="profile", disable=not progress):
        with ablated(model, profile_ablation(profile, path, loaded)):
            results = [score_probe(model, p) for p in prepared]
        out["profiles"][profile.name] = {
            "arm": profile.selection.arm,
            "seed": profile.selection.seed,
            "heads": [h.name for h in profile.heads],
            "mode": profile.ablation.mode,
            "results": results,
            "summary": _summary(results),
        }
    out["arms"] = arm_summary(out["profiles"])
    return out


def arm_summary(profiles: dict[str, Any]) -> dict[str, Any]:
    """Per arm: mean and spread over its profiles (the random arm has one per seed)."""
    arms: dict[str, list[dict[str, Any]]] = {}
    for entry in profiles.values():
        arms.setdefault(entry["arm"], []).append(entry)
    summary = {}
    for arm, entries in arms.items():
        accuracy = [e["summary"]["mean_accuracy"] for e in entries]
        keys = entries[0]["summary"]["maxskew"].keys()
        skews = {k: [e["summary"]["maxskew"][k] for e in entries] for k in keys}
        summary[arm] = {
            "profiles": len(entries),
            "heads": len(entries[0]["heads"]),
            "accuracy_mean": float(np.mean(accuracy)) if None not in accuracy else None,
            "accuracy_std": float(np.std(accuracy)) if None not in accuracy else None,
            "maxskew_mean": {k: float(np.mean(v)) for k, v in skews.items()},
            "maxskew_std": {k: float(np.std(v)) for k, v in skews.items()},
            "maxskew_null_mean": {
                k: float(np.mean([e["summary"]["maxskew_null"][k] for e in entries])) for k in keys
            },
        }
    return summary


def plot_tradeoff(results: dict[str, Any], path: Path) -> None:
    """Accuracy against MaxSkew, one point per arm (random: mean with a std error bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ccsclip.fileio import atomic_path

    arms = {a: r for a, r in results["arms"].items() if r["accuracy_mean"] is not None}
    keys = [k for r in arms.values() for k in r["maxskew_mean"]]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for index, (arm, row) in enumerate(arms.items()):
        label = f"{arm} ({row['heads']} heads)"
        if keys:
            x, xerr = row["maxskew_mean"][keys[0]], row["maxskew_std"][keys[0]]
        else:  # no bias probe: one column per arm
            x, xerr = index, 0.0
        ax.errorbar(
            x,
            row["accuracy_mean"],
            xerr=xerr,
            yerr=row["accuracy_std"],
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
