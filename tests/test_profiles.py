"""CCS table, judges, profile schema, arms, evaluation and the rank CLI on real models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from ccsclip.errors import IntegrityError, InvalidInputError
from ccsclip.heads import Ablation, ablated
from ccsclip.profiles.rank.judges.base import Description
from ccsclip.profiles.rank.judges.tags import TagsJudge
from ccsclip.profiles.rank.table import load_table
from ccsclip.profiles.schema import load_profile, means_path, write_profile


def _d(text, *tags):
    return Description(text, frozenset(tags))


def test_tags_judge_label_consistency_and_ties():
    judge = TagsJudge(ignore=["other"])
    verdict = judge.judge(
        [
            _d("red", "colour"),
            _d("blue", "colour"),
            _d("dog", "animal"),
            _d("red car", "colour", "vehicle"),
            _d("x", "other"),
        ]
    )
    assert verdict.concept == "colour" and verdict.consistent == (True, True, False, True, False)
    assert verdict.ccs == 3
    tie = judge.judge(
        [_d("dog", "animal"), _d("red", "colour"), _d("cat", "animal"), _d("blue", "colour")]
    )
    assert tie.concept == "animal"  # tie broken by the earliest description
    with pytest.raises(Exception, match="tags judge needs a tagged pool"):
        judge.judge([Description("untagged")])


def test_embedding_judge_assigns_concepts_with_a_real_encoder(tiny):
    from ccsclip.profiles.rank.embed import clip_text_encoder
    from ccsclip.profiles.rank.judges.embedding import EmbeddingJudge, load_vocabulary

    vocabulary = load_vocabulary()
    judge = EmbeddingJudge(clip_text_encoder(tiny), vocabulary, "ccsclip-tiny")
    texts = [Description(t) for t in ["a red thing", "blue", "a dog", "a car", "green"]]
    verdict = judge.judge(texts)
    assert verdict.concept in vocabulary and len(verdict.consistent) == 5
    assert verdict.ccs >= 1  # the label is the most frequent assignment: at least one fits
    again = judge.judge_with_concept(texts, verdict.concept)
    assert again == verdict.consistent
    assert judge.describe()["kind"] == "embedding"


@pytest.fixture(scope="module")
def ranked(tmp_path_factory, small_world):
    from ccsclip.models import load_model
    from ccsclip.profiles.rank.pipeline import RankOptions, rank
    from ccsclip.profiles.rank.pool import load_pool
    from ccsclip.profiles.rank.table import Thresholds

    out = tmp_path_factory.mktemp("rank")
    loaded = load_model("ccsclip-tiny")
    options = RankOptions(
        layers=(1, 2),
        null_samples=20,
        thresholds=Thresholds(high=3, low=1),
        arms=["baseline", "high-ccs", "low-ccs", "low-matched", "random", "manual"],
        seeds=[0, 1],
        manual=["L1H0", "L2H3"],
    )
    result = rank(
        loaded,
        small_world / "calibration",
        load_pool(small_world / "pool.txt"),
        out,
        options,
        progress=False,
    )
    return loaded, out, result


def test_rank_writes_table_profiles_and_null(ranked):
    loaded, out, result = ranked
    table, sha = load_table(out / "ccs.json", loaded.spec.weights_sha256)
    assert [(r.layer, r.head) for r in table.heads] == [
        (layer, h) for layer in (1, 2) for h in range(4)
    ]
    for row in table.heads:
        assert row.ccs == sum(d.consistent for d in row.descriptions)
        assert len(row.descriptions) == 5 and 0 < row.null_p <= 1
    assert table.null["samples"] == 20 and sum(table.null["histogram"]) == 20
    assert (out / "ccs.csv").read_text().count("\n") == 9
    assert (out / "ccs_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    names = {p.name for p, _ in result["profiles"]}
    assert names == {
        "baseline",
        "high-ccs",
        "low-ccs",
        "low-matched",
        "random-s0",
        "random-s1",
        "manual",
    }


def test_arms_follow_their_definitions(ranked):
    loaded, out, result = ranked
    table, _ = load_table(out / "ccs.json")
    profiles = {p.name: p for p, _ in result["profiles"]}
    high = {(r.layer, r.head) for r in table.heads if r.ccs >= 3}
    assert set(profiles["high-ccs"].head_pairs()) == high
    assert set(profiles["low-ccs"].head_pairs()) == {
        (r.layer, r.head) for r in table.heads if r.ccs <= 1
    }
    for seed in ("random-s0", "random-s1"):
        chosen = set(profiles[seed].head_pairs())
        assert len(chosen) == len(high) and not chosen & high
    assert len(profiles["low-matched"].heads) == len(high)
    assert profiles["manual"].head_pairs() == [(1, 0), (2, 3)]
    assert profiles["baseline"].heads == []


def test_profile_schema_rejects_bad_files(ranked, tmp_path):
    loaded, out, result = ranked
    profile, path = next((p, f) for p, f in result["profiles"] if p.name == "manual")
    data = yaml.safe_load(path.read_text())
    data["surprise"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidInputError, match="surprise"):
        load_profile(bad)
    profile = profile.model_copy(deep=True)
    profile.heads[0].layer = 7
    with pytest.raises(InvalidInputError, match="heads that do not exist: L7H0"):
        profile.check_against(loaded.spec.layers, loaded.spec.heads)
    bad.write_text("name: [unclosed")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        load_profile(bad)


def test_means_hash_mismatch_is_refused(ranked, tmp_path):
    _, out, result = ranked
    profile, path = next((p, f) for p, f in result["profiles"] if p.name == "manual")
    copy = out / "profiles" / "tampered.yaml"
    profile = profile.model_copy(update={"name": "tampered"}, deep=True)
    profile.ablation.means_sha256 = "0" * 64
    write_profile(copy, profile)
    with pytest.raises(IntegrityError, match="do not match the sha256"):
        means_path(load_profile(copy), copy)


def test_table_of_another_model_is_refused(ranked):
    _, out, _ = ranked
    with pytest.raises(IntegrityError, match="other weights"):
        load_table(out / "ccs.json", "f" * 64)


def test_evaluation_matches_direct_computation(ranked, small_world):
    from ccsclip.probeset import load_probe
    from ccsclip.profiles.evaluate import evaluate_profiles
    from ccsclip.profiles.probe_eval import load_image_tensor
    from ccsclip.zeroshot import class_embeddings

    loaded, out, result = ranked
    entries = [(p, f) for p, f in result["profiles"] if p.name in ("baseline", "manual")]
    probes = [small_world / "accuracy-colour", small_world / "bias-shape-colour"]
    results = evaluate_profiles(loaded, entries, probes, progress=False)
    probe = load_probe(probes[0])
    images = load_image_tensor([p for p, _ in probe.samples], loaded.preprocess)
    labels = torch.tensor([label for _, label in probe.samples])
    classes = class_embeddings(
        loaded.model, loaded.tokenizer, probe.class_names, probe.spec.templates
    )
    manual, manual_path = entries[1]
    from ccsclip.profiles.evaluate import profile_ablation

    with torch.no_grad():
        plain = loaded.model.encode_image(images, normalize=True)
        with ablated(loaded.model, profile_ablation(manual, manual_path, loaded)):
            pruned = loaded.model.encode_image(images, normalize=True)
    for name, embeddings in (("baseline", plain), ("manual", pruned)):
        expected = float(((embeddings @ classes.T).argmax(1) == labels).float().mean())
        got = results.profiles[name].results[0].accuracy
        assert got == pytest.approx(expected)
    skew = results.profiles["baseline"].results[1].maxskew["colour@10"]
    queries = len(load_probe(probes[1]).spec.queries)
    assert len(skew.per_query) == queries
    assert skew.sum == pytest.approx(queries * skew.mean)
    assert not torch.allclose(plain, pruned)
    assert isinstance(Ablation.of([(1, 0)]), Ablation)


def test_evaluation_json_round_trips_through_the_typed_result(ranked, small_world, tmp_path):
    """evaluation.json as `ccsclip evaluate` writes it, read into `Evaluation` and dumped again:
    the same document, key for key and in the same order; the keys are those of the dict form."""
    from ccsclip.profiles.cli import _evaluate
    from ccsclip.profiles.evaluate import Evaluation

    loaded, _, result = ranked
    entries = [(p, f) for p, f in result["profiles"] if p.name in ("baseline", "random-s0")]
    _evaluate(
        loaded,
        entries,
        [small_world / "accuracy-colour", small_world / "bias-shape-colour"],
        tmp_path,
    )
    text = (tmp_path / "evaluation.json").read_text()
    written = json.loads(text)
    assert list(written) == ["model", "probes", "profiles", "arms"]
    profile = written["profiles"]["baseline"]
    assert list(profile) == ["arm", "seed", "heads", "mode", "results", "summary"]
    assert list(profile["summary"]) == ["mean_accuracy", "maxskew", "maxskew_null"]
    assert [r["kind"] for r in profile["results"]] == ["accuracy", "bias"]
    typed = Evaluation.model_validate(written)
    assert json.dumps(typed.to_dict()) == json.dumps(written)
    assert typed.arms["random"].profiles == 1 and typed.arms["baseline"].heads == 0


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "ccsclip.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_rank_cli_resumes_and_evaluates(tmp_path, small_world):
    args = [
        "rank",
        "-m",
        "ccsclip-tiny",
        "--images",
        str(small_world / "calibration"),
        "--pool",
        str(small_world / "pool.txt"),
        "--out",
        str(tmp_path),
        "--null-samples",
        "5",
        "--high",
        "3",
        "--seed",
        "0",
    ]
    first = _cli(*args, "--probe", str(small_world / "accuracy-size"))
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "evaluation.json").read_text())["arms"]["baseline"]
    assert (tmp_path / "tradeoff.png").is_file()
    stages = json.loads((tmp_path / "stages.json").read_text())
    names = [s["name"] for s in stages["stages"]]
    assert names[:3] == ["load model", "judge setup", "statistics"] and "null" in names
    assert names[-1] == "evaluation" and "TextSpan + judge" in first.stdout  # the printed table
    assert sum(s["wall_s"] for s in stages["stages"]) <= stages["total_wall_s"]
    second = _cli(*args)
    assert second.returncode == 0 and "reused statistics" in second.stderr
    assert "reused" in json.loads((tmp_path / "stages.json").read_text())["stages"][2]["note"]


def test_rank_cli_bad_inputs(tmp_path, small_world):
    pool = tmp_path / "pool.txt"
    pool.write_text("# ccsclip-pool v1\nred\tcolour\n\nblue\tcolour\n")
    bad_pool = _cli(
        "rank",
        "-m",
        "ccsclip-tiny",
        "--images",
        str(small_world / "calibration"),
        "--pool",
        str(pool),
        "--out",
        str(tmp_path / "o"),
    )
    assert bad_pool.returncode == 2 and ":3:" in bad_pool.stderr
    assert not (tmp_path / "o").exists()
    untagged = tmp_path / "untagged.txt"
    untagged.write_text("red\nblue\ngreen\nyellow\nsmall\nlarge\n")
    wrong_judge = _cli(
        "rank",
        "-m",
        "ccsclip-tiny",
        "--images",
        str(small_world / "calibration"),
        "--pool",
        str(untagged),
        "--judge",
        "tags",
        "--out",
        str(tmp_path / "o"),
    )
    assert wrong_judge.returncode == 2 and "has no tags" in wrong_judge.stderr
    manual = _cli("profiles", "--ccs", str(tmp_path / "none.json"), "--out", str(tmp_path))
    assert manual.returncode == 2 and "does not exist" in manual.stderr


def test_llm_endpoint_down_is_a_clear_error(tmp_path, small_world, monkeypatch):
    env_args = [
        "rank",
        "-m",
        "ccsclip-tiny",
        "--images",
        str(small_world / "calibration"),
        "--pool",
        str(small_world / "pool.txt"),
        "--judge",
        "llm",
        "--out",
        str(tmp_path / "o"),
        "--llm-base-url",
        "http://127.0.0.1:9/v1",
        "--llm-model",
        "x",
        "--null-samples",
        "0",
    ]
    monkeypatch.setenv("CCSCLIP_LLM_API_KEY", "k")
    monkeypatch.setenv("CCSCLIP_LLM_CACHE", str(tmp_path / "cache"))
    result = _cli(*env_args)
    assert result.returncode == 2 and "127.0.0.1:9" in result.stderr
    assert not (tmp_path / "o" / "ccs.json").exists()
