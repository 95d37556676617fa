"""Profile search (issue 10): split, estimate against true ablation, search artefacts, bad input.

Runs on the shipped organism model and the small generated world (`small_world`), so the
numbers are real but small; the search runs once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from direct_only import direct_only_embeddings
from typer.testing import CliRunner

from ccsclip.cli import app
from ccsclip.fairness import max_skew_at_k
from ccsclip.heads.ablation import Ablation, ablated
from ccsclip.profiles.schema import load_profile
from ccsclip.profiles.search.batch_metrics import max_skew
from ccsclip.profiles.search.bootstrap import resampled_max_skews
from ccsclip.profiles.search.direct_cache import build_cache
from ccsclip.profiles.split import Split, hash_fraction

ACCURACY = ("shape", "colour", "size")


@pytest.fixture(scope="module")
def calibration(organism, small_world) -> torch.Tensor:
    from ccsclip.engine.image_files import list_images
    from ccsclip.profiles.probe_eval import load_image_tensor

    return load_image_tensor(list_images(small_world / "calibration")[:48], organism.preprocess)


def _args(world: Path, means: Path, out: Path, *extra: str) -> list[str]:
    args = ["search", "-m", "ccsclip-organism", "--pretrained", "embedded"]
    for concept in ACCURACY:
        args += ["--probe", str(world / f"accuracy-{concept}")]
    args += ["--bias-probe", str(world / "bias-shape-colour"), "--attribute", "colour"]
    args += ["--means", str(means), "--out", str(out), "--bootstrap", "20"]
    return [*args, *extra]


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_disjoint_and_stable():
    names = [f"images/b{i:05d}.png" for i in range(400)]
    search, validation = Split().parts(names)
    again = Split().parts(list(reversed(names)))
    assert set(search).isdisjoint(validation)
    assert sorted([*search, *validation]) == list(range(400))
    assert {names[i] for i in search} == {names[::-1][i] for i in again[0]}  # order-free
    assert 150 < len(validation) < 250
    # a fixed value: the same on every machine and run (sha256, not Python's salted hash)
    assert hash_fraction("b00000.png") == pytest.approx(0.2159722384121235, abs=1e-15)
    grown = Split().parts([*names, "images/new.png"])
    assert set(grown[1]) - {400} == set(validation)  # adding images never moves others
    assert Split(salt="other").parts(names)[1].tolist() != validation.tolist()


# --------------------------------------------------------------------------- metrics


def test_batched_max_skew_equals_the_reference():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 90))
    codes = rng.integers(0, 4, 90)
    for k in (1, 10, 45):
        ours = max_skew(torch.from_numpy(scores), torch.from_numpy(codes), 4, k)
        reference = [max_skew_at_k(row, codes.astype(str), k) for row in scores]
        assert ours.numpy() == pytest.approx(reference, abs=1e-6)


def test_resampled_max_skew_equals_ranking_each_resample():
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(7, 300, generator=gen)
    codes = torch.randint(0, 5, (300,), generator=gen)
    images = torch.randint(0, 300, (6, 300), generator=gen)
    fast = resampled_max_skews(scores, codes, 5, [3, 10, 40], images)
    for k, values in fast.items():
        slow = max_skew(scores[:, images].permute(1, 0, 2), codes[images], 5, k)
        assert torch.allclose(values, slow)


# --------------------------------------------------------------------------- estimate vs true


def test_estimate_equals_the_direct_only_forward_exactly(organism, means_file, calibration):
    from ccsclip.heads.stats import load_means

    model = organism.model.double().eval()
    try:
        means = load_means(means_file).double()
        images = calibration.double()
        heads = [(layer, head) for layer in range(organism.spec.layers) for head in range(8)]
        cache = build_cache(model, images, heads, means)
        with torch.inference_mode():
            plain = model.encode_image(images, normalize=True)
        assert torch.allclose(cache.estimate([]), plain, atol=1e-12, rtol=0)
        chosen = [(0, 3), (2, 1), (2, 5), (4, 0), (5, 7)]
        for mode, table in (("mean", means), ("zero", None)):
            ablation = Ablation.of(chosen, mode, table)
            cache = build_cache(model, images, chosen, table)
            direct = direct_only_embeddings(model, images, ablation)
            assert torch.allclose(cache.estimate(chosen), direct, atol=1e-12, rtol=0), mode
            with ablated(model, ablation), torch.inference_mode():
                true = model.encode_image(images, normalize=True)
            assert (cache.estimate(chosen) - true).abs().max() > 1e-4  # indirect paths matter
    finally:
        organism.model.float()


def test_estimate_gap_per_layer_is_smallest_for_the_last_layer(organism, means_file, calibration):
    from ccsclip.heads.stats import load_means

    model = organism.model.eval()
    means = load_means(means_file)
    layers = organism.spec.layers
    heads = [(layer, head) for layer in range(layers) for head in range(organism.spec.heads)]
    cache = build_cache(model, calibration, heads, means)
    gaps = []
    for layer in range(layers):
        removed = [(layer, head) for head in range(organism.spec.heads)]
        with ablated(model, Ablation.of(removed, "mean", means)), torch.inference_mode():
            true = model.encode_image(calibration, normalize=True)
        cosine = (cache.estimate(removed) * true).sum(-1)
        gaps.append(float((1 - cosine).mean()))
    assert int(np.argmin(gaps)) == layers - 1, gaps
    assert gaps[-1] < 0.5 * min(gaps[:-1]), gaps


# --------------------------------------------------------------------------- the search


@pytest.fixture(scope="module")
def searched(small_world, means_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    extra = ["--max-heads", "2", "--k", "10", "--max-accuracy-drop", "0.05"]
    extra += ["--check-probe", str(small_world / "bias-shape-colour"), "--attribution"]
    result = CliRunner().invoke(app, _args(small_world, means_file, out, *extra))
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "pareto.json").read_text()), result.output


def test_search_reports_validation_points_with_constraint_flags(searched):
    out, result, output = searched
    assert (out / "pareto.png").stat().st_size > 1000
    assert "validation part" in output
    assert result["split"]["validation"] == 0.5
    assert [p["n_heads"] for p in result["points"]] == list(range(1, len(result["points"]) + 1))
    limit = result["constraint"]["max_accuracy_drop"]
    base = result["baseline"]["validation"]["accuracy"]["value"]
    for entry in [*result["points"], *result["arms"]]:
        val = entry["validation"]
        assert isinstance(entry["meets_constraint"]["validation"], bool)
        assert entry["meets_constraint"]["validation"] == (
            base - val["accuracy"]["value"] <= limit + 1e-9
        )
        for metric in ("accuracy", "maxskew@10", "maxskew@20"):
            assert val[metric]["low"] <= val[metric]["value"] <= val[metric]["high"]
            assert "minus_baseline" in val[metric]
        assert set(entry["gap"]) == set(val)  # estimate minus true for every metric
    for point in result["points"]:
        assert point["estimate"]["search"]["maxskew@10"] >= 0
        sizes = [a for a in result["arms"] if a["n_heads"] == point["n_heads"]]
        assert sorted(a["arm"] for a in sizes) == ["random"] * 3  # no CCS table given
    chosen = result["chosen"]
    if chosen is not None:
        assert chosen["meets_constraint"] == {"validation": True}
        assert result["check"]["chosen"]["maxskew@10"]["minus_baseline"]


def test_attribution_stage_on_writes_its_figures_and_typed_parts_round_trip(searched):
    """With --attribution the stage runs first: its figures in pareto.json and the verdict
    printed; the typed parts of the result read back to the same JSON."""
    from ccsclip.profiles.attribute.reach import Reach
    from ccsclip.profiles.search.data import ProbeIdentity
    from ccsclip.profiles.search.result import CheckResult

    _, result, output = searched
    assert list(result) == [
        *("schema", "model", "objective", "constraint", "method", "ablation", "split"),
        *("probes", "bootstrap", "baseline", "points", "arms", "chosen", "chosen_reason"),
        *("beats_baseline", "significant", "change")[: 3 if result["chosen"] else 2],
        *("check", "attribution", "timing", "profiles"),
    ]
    reach = result["attribution"]
    assert list(reach) == [
        "part", "by_kind", "top_components", "head_order", "verdict", "heads_reach"
    ]  # fmt: skip
    assert reach["part"] == "search" and len(reach["head_order"]) == 6 * 8
    assert f"attribution: {reach['verdict']}" in " ".join(output.split())
    assert result["timing"]["attribution_s"] > 0
    assert Reach.model_validate(reach).to_dict() == reach
    for probe in result["probes"]:
        assert ProbeIdentity.model_validate(probe).to_dict() == probe
    if result["check"] is not None:
        assert CheckResult.model_validate(result["check"]).to_dict() == result["check"]


def test_attribution_stage_off_attributes_nothing(small_world, tiny, tmp_path):
    """Without --attribution (the default) nothing is attributed, nor written; asking for
    attribution-ranked candidates without the stage is a clear error."""
    from ccsclip.headref import Head
    from ccsclip.profiles.search.run import SearchOptions, SearchRun

    options = SearchOptions(
        accuracy_probes=[small_world / f"accuracy-{c}" for c in ACCURACY],
        bias_probes=[small_world / "bias-shape-colour"],
        out=tmp_path / "o",
        attribute="colour",
        k=10,
        mode="zero",
        replicates=20,
    )
    run = SearchRun(tiny, options, progress=False)
    run.attribute()
    run.choose_candidates()
    assert run.reach is None and "attribution_s" not in run.timing and run.means_sha256 is None
    assert run.candidates and all(isinstance(h, Head) for h in run.candidates)

    args = ["search", "-m", "ccsclip-tiny", "--mode", "zero", "--attribute", "colour"]
    for concept in ACCURACY:
        args += ["--probe", str(small_world / f"accuracy-{concept}")]
    args += ["--bias-probe", str(small_world / "bias-shape-colour"), "--k", "10"]
    args += ["--max-heads", "1", "--bootstrap", "20", "--max-accuracy-drop", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "off")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "off" / "pareto.json").read_text())
    assert written["attribution"] is None and "attribution_s" not in written["timing"]
    assert "attribution:" not in result.output
    asked = [*args, "--candidates", "attribution:2", "--out", str(tmp_path / "asked")]
    refused = CliRunner().invoke(app, asked)
    assert refused.exit_code == 2 and "add --attribution" in refused.output, refused.output
    assert not (tmp_path / "asked").exists()


def test_attribution_never_imports_the_search():
    """The stages' imports run one way: the search imports attribution, never the reverse."""
    import ast

    import ccsclip.profiles.attribute as attribution

    for path in Path(attribution.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                assert not name.startswith("ccsclip.profiles.search"), (path.name, name)


def test_search_profile_records_its_provenance(searched, small_world):
    out, result, _ = searched
    for name, path in result["profiles"].items():
        profile = load_profile(path)
        assert profile.name == name and profile.selection.arm == "search"
        search = profile.selection.search
        assert search.objective == {"metric": "maxskew@10", "attribute": "colour", "k": 10}
        assert search.split["salt"] == "ccsclip-split-v1"
        hashes = {p.name: p.content_sha256 for p in search.probes}
        probe_yaml = (small_world / "bias-shape-colour" / "probe.yaml").read_text()
        assert hashes["bias-shape-colour"] in probe_yaml
        assert isinstance(search.validation["meets_constraint"], bool)
    if result["chosen"] is not None:
        assert load_profile(out / "profiles" / "search.yaml").heads


def test_searched_profile_exports_and_serves(searched, organism, tmp_path, small_world):
    from PIL import Image

    from ccsclip.engine.engine import Engine
    from ccsclip.export.bundle import export_bundle

    out, result, _ = searched
    name, path = next(iter(result["profiles"].items()))
    profile = load_profile(path)
    export_bundle(organism, [(profile, Path(path))], tmp_path / "bundle", progress=False)
    engine = Engine.load(tmp_path / "bundle", intra_op_threads=1)
    assert name in engine.available_profiles()
    image = Image.open(next((small_world / "accuracy-shape" / "circle").iterdir()))
    classes = engine.class_embeddings(["circle", "square", "triangle"])
    probs = engine.probabilities(engine.embed_images([image], profile=name), classes)
    assert probs.shape == (1, 3) and probs.sum() == pytest.approx(1.0, abs=1e-4)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, w: _swap(a, "--bias-probe", w / "accuracy-shape"), "is an accuracy probe"),
        (lambda a, w: _swap(a, "--attribute", "mood"), "has no attribute 'mood'"),
        (lambda a, w: [*a, "--k", "5000"], "K=[5000] is larger than"),
        (lambda a, w: _swap(a, "--probe", w / "bias-shape-colour"), "is a bias probe"),
    ],
)
def test_bad_input_is_a_clear_error(small_world, means_file, tmp_path, change, message):
    args = change(_args(small_world, means_file, tmp_path / "o"), small_world)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_impossible_constraint_is_a_clear_error(small_world, tiny, tmp_path):
    """The organism loses no accuracy to any single head on these small probes, so take the
    random-weight tiny model (zero mode): its worst head, alone as candidate, no drop allowed."""
    from ccsclip.profiles.search.data import load_accuracy_data, load_bias_data
    from ccsclip.profiles.search.greedy import Scorer

    split = Split()
    probes = [load_accuracy_data(tiny, small_world / f"accuracy-{c}", split) for c in ACCURACY]
    probes.append(load_bias_data(tiny, small_world / "bias-shape-colour", split, "colour", 10))
    spec = tiny.spec
    heads = [(layer, head) for layer in range(spec.layers) for head in range(spec.heads)]
    caches = [build_cache(tiny.model.eval(), p.images, heads) for p in probes]
    scorer = Scorer(probes, caches, 10)
    _, accuracy = scorer.score((), range(len(heads)))
    worst = heads[int(accuracy.argmin())]
    assert float(accuracy.min()) < scorer.baseline().accuracy
    args = ["search", "-m", "ccsclip-tiny", "--mode", "zero", "--attribute", "colour"]
    for concept in ACCURACY:
        args += ["--probe", str(small_world / f"accuracy-{concept}")]
    args += ["--bias-probe", str(small_world / "bias-shape-colour"), "--k", "10"]
    args += ["--candidates", f"L{worst[0]}H{worst[1]}", "--max-accuracy-drop", "0"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "no head set meets the accuracy constraint" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def _swap(args: list[str], option: str, value) -> list[str]:
    index = args.index(option)
    return [*args[: index + 1], str(value), *args[index + 2 :]]


# --------------------------------------------------------------------------- greedy and beam


def _synthetic(n: int = 120, heads: int = 10, dim: int = 16, seed: int = 0):
    """A cache and two probes on random residuals: exercises the search logic alone."""
    from ccsclip.profiles.search.data import ProbeData
    from ccsclip.profiles.search.direct_cache import DirectCache

    gen = torch.Generator().manual_seed(seed)
    cache = DirectCache(
        heads=tuple((1, h) for h in range(heads)),
        residual=torch.randn(n, dim, generator=gen) * 3,
        deltas=0.3 * torch.randn(n, heads, dim, generator=gen),
        ln_weight=torch.ones(dim),
        ln_bias=torch.zeros(dim),
        ln_eps=1e-5,
        proj=torch.randn(dim, 8, generator=gen),
    )
    parts = {"search": torch.arange(0, n, 2), "validation": torch.arange(1, n, 2)}
    parts["all"] = torch.arange(n)
    base = cache.estimate([])
    texts = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=-1)
    common = {"path": "-", "content_sha256": "0" * 64, "images": torch.zeros(n), "parts": parts}
    accuracy = ProbeData(
        name="acc", kind="accuracy", texts=texts, targets=(base @ texts.T).argmax(-1), **common
    )
    bias = ProbeData(
        name="bias",
        kind="bias",
        texts=torch.nn.functional.normalize(torch.randn(5, 8, generator=gen), dim=-1),
        targets=torch.randint(0, 3, (n,), generator=gen),
        values=("a", "b", "c"),
        ks=(10,),
        attribute="x",
        **common,
    )
    return [accuracy, bias], [cache, cache]


def test_greedy_path_keeps_the_constraint_and_beam_is_never_worse_at_two_heads():
    from ccsclip.profiles.search.greedy import Constraint, Scorer, search_path

    probes, caches = _synthetic()
    scorer = Scorer(probes, caches, 10, chunk=3)
    constraint = Constraint(max_accuracy_drop=0.1, max_heads=4)
    greedy = search_path(scorer, constraint, beam=1, progress=False)
    assert greedy[0].heads == () and 1 <= len(greedy) - 1 <= 4
    for before, after in zip(greedy, greedy[1:], strict=False):
        assert set(before.heads) < set(after.heads) and len(after.heads) == len(before.heads) + 1
        assert constraint.allows(greedy[0].accuracy, after.accuracy)
    assert len(greedy) == 5  # four heads fit the constraint here
    objective, accuracy = scorer.score(greedy[1].heads, range(10))  # the step is the best one
    free = [i for i, head in enumerate(scorer.heads) if head not in greedy[1].heads]
    feasible = [
        float(objective[i]) for i in free if constraint.allows(greedy[0].accuracy, accuracy[i])
    ]
    assert greedy[2].objective == pytest.approx(min(feasible))
    beam = search_path(scorer, constraint, beam=3, progress=False)
    assert beam[1].objective == pytest.approx(greedy[1].objective)
    assert beam[2].objective <= greedy[2].objective + 1e-9
    with pytest.raises(Exception, match="beam width"):
        search_path(scorer, constraint, beam=0, progress=False)


def test_verified_steps_drop_sets_that_truly_break_the_constraint():
    """A verifier that says head L1H0 costs accuracy through later layers keeps it out."""
    from ccsclip.profiles.search.greedy import Constraint, Scorer, search_path

    probes, caches = _synthetic()
    scorer = Scorer(probes, caches, 10)
    constraint = Constraint(max_accuracy_drop=0.1, max_heads=3)
    plain = search_path(scorer, constraint, progress=False)
    culprit = plain[1].heads[0]
    calls = []

    def verify(heads):
        calls.append(heads)
        objective, accuracy = scorer.score((), [scorer.heads.index(h) for h in heads[:1]])
        penalty = 0.5 if culprit in heads else 0.0
        return float(objective[0]) + 0.01 * len(heads), float(accuracy[0]) - penalty

    verified = search_path(scorer, constraint, progress=False, verify=verify, verify_top=4)
    assert all(culprit not in point.heads for point in verified)
    assert all(point.true_objective is not None for point in verified[1:])
    assert len(calls) <= 4 * (len(verified) - 1) + 4
