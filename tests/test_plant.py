"""Planted positive controls (issue 18): bias carriers planted into the organism are found by
attribution in order of strength, removed by the search when heads carry them, and refused
plainly when an MLP carries them; the paper's arms at the same size do not help.

One small world (30 images per shape x colour: with fewer, MaxSkew@20 of a half is capped near
its null) and two planted models, each searched once; the search's own attribution (search part)
is what the attribution assertions read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccsclip.cli import app
from ccsclip.errors import InvalidInputError
from ccsclip.organism.plant import Carrier, parse_carrier, plant

HEADS = (
    Carrier(component="L5H7", colour="red", strength=0.08),
    Carrier(component="L3H6", colour="red", strength=0.04),
)
MLP = (Carrier(component="L4.mlp", colour="blue", strength=0.12),)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from ccsclip.organism.probes import generate_all

    root = tmp_path_factory.mktemp("plant-world")
    generate_all(root, seed=0, n_per_class=6, n_per_cell=30, n_gallery=1, n_calibration=64)
    return root


def _planted(plan, world: Path, out: Path) -> tuple[Path, Path, dict]:
    """Plant, save (fp16 + card), and compute the planted model's ablation means."""
    from ccsclip.heads.collect import collect_statistics
    from ccsclip.heads.stats import save_statistics
    from ccsclip.models import load_model
    from ccsclip.organism.weights import save_trained

    loaded = load_model("ccsclip-organism", "embedded")
    record = plant(loaded, plan, n_images=300)
    weights, card = save_trained(loaded, {"planted": record}, out)
    planted = load_model("ccsclip-organism", str(weights))
    layers = tuple(range(planted.spec.layers))
    moments, means, meta = collect_statistics(
        planted, world / "calibration", layers, 64, progress=False
    )
    save_statistics(out, moments, means, meta)
    return weights, out / "means.safetensors", json.loads(card.read_text())


@pytest.fixture(scope="module")
def planted_heads(world, tmp_path_factory):
    return _planted(HEADS, world, tmp_path_factory.mktemp("heads"))


@pytest.fixture(scope="module")
def planted_mlp(world, tmp_path_factory):
    return _planted(MLP, world, tmp_path_factory.mktemp("mlp"))


def _search(world: Path, planted, out: Path, heads: int, *extra: str) -> tuple[dict, str]:
    weights, means, _ = planted
    args = ["search", "-m", "ccsclip-organism", "--pretrained", str(weights)]
    for concept in ("shape", "colour", "size"):
        args += ["--probe", str(world / f"accuracy-{concept}")]
    args += ["--bias-probe", str(world / "bias-shape-colour"), "--attribute", "colour"]
    args += ["--means", str(means), "--k", "20", "--max-heads", str(heads)]
    args += ["--max-accuracy-drop", "0.05", "--bootstrap", "20", "--random-seed", "0"]
    args += ["--attribution", "--out", str(out), *extra]  # the attribution stage is read below
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "pareto.json").read_text()), result.output


@pytest.fixture(scope="module")
def searched_heads(world, planted_heads, tmp_path_factory):
    return _search(world, planted_heads, tmp_path_factory.mktemp("search-heads"), 2)


@pytest.fixture(scope="module")
def searched_mlp(world, planted_mlp, tmp_path_factory):
    out = tmp_path_factory.mktemp("search-mlp")
    return _search(world, planted_mlp, out, 1, "--candidates", "attribution:4")


def test_the_card_records_the_plan_and_planting_is_deterministic(planted_heads):
    from ccsclip.models import load_model

    _, _, card = planted_heads
    plan = card["planted"]["plan"]
    assert [(p["component"], p["colour"], p["strength"]) for p in plan] == [
        ("L5H7", "red", 0.08),
        ("L3H6", "red", 0.04),
    ]
    for record in plan:  # the fitted readout separates the colour from the others
        assert record["readout"]["colour_mean"] > 0.6 > 0.2 > record["readout"]["other_mean"]
    one, two = (load_model("ccsclip-organism", "embedded") for _ in range(2))
    plant(one, MLP, n_images=60)
    plant(two, MLP, n_images=60)
    from ccsclip.models import weights_sha256

    assert weights_sha256(one.model) == weights_sha256(two.model)


def test_bad_plans_are_clear_errors():
    with pytest.raises(InvalidInputError, match="COMPONENT:COLOUR:STRENGTH"):
        parse_carrier("L5H7:red")
    with pytest.raises(InvalidInputError, match="colour 'pink'"):
        parse_carrier("L5H7:pink:0.1")
    with pytest.raises(InvalidInputError, match="L<layer>H<head>"):
        parse_carrier("head7:red:0.1")
    from ccsclip.models import load_model

    with pytest.raises(InvalidInputError, match="L9H0 does not exist"):
        plant(load_model("ccsclip-organism", "embedded"), [parse_carrier("L9H0:red:0.1")])


def test_attribution_ranks_the_planted_heads_first_in_order_of_strength(searched_heads):
    reach = searched_heads[0]["attribution"]
    assert reach["head_order"][:2] == ["L5H7", "L3H6"]
    heads = [c for c in reach["top_components"] if c["kind"] == "head"]
    assert heads[0]["share"]["low"] > heads[1]["share"]["high"]  # stronger, clearly
    assert all(c["favours"] == "red" for c in heads[:2])
    assert reach["by_kind"]["head"]["low"] > 0.5


def test_attribution_gives_the_mlp_carried_bias_to_its_mlp(searched_mlp):
    reach = searched_mlp[0]["attribution"]
    top = reach["top_components"][0]
    assert top["name"] == "L4.mlp" and top["favours"] == "blue"
    assert reach["by_kind"]["mlp"]["low"] > reach["by_kind"]["head"]["high"]
    # --candidates attribution:4 searched the four heads with the largest shares
    assert searched_mlp[0]["method"]["candidates"] == sorted(
        reach["head_order"][:4], key=lambda n: tuple(int(x) for x in n[1:].split("H"))
    )


def test_search_removes_the_head_carried_skew_and_the_arms_do_not(searched_heads):
    result, output = searched_heads
    assert result["points"][0]["heads"] == ["L5H7"]  # the strongest carrier first
    assert "L5H7" in result["chosen"]["heads"]
    assert result["significant"] and result["beats_baseline"]
    change = result["change"]["value"]
    for arm in result["arms"]:
        arm_change = arm["validation"]["maxskew@20"]["minus_baseline"]
        assert arm_change["value"] > change / 2, arm["name"]  # no arm does half as well
    assert result["attribution"]["heads_reach"]
    assert "heads carry" in output
    base = result["baseline"]
    assert base["null"]["maxskew@20"] < base["validation"]["maxskew@20"]["value"]


def test_search_says_plainly_it_cannot_remove_the_mlp_carried_skew(searched_mlp):
    result, output = searched_mlp
    assert not result["attribution"]["heads_reach"]
    assert "head pruning cannot remove most of this bias" in output
    assert "MLPs carry" in result["attribution"]["verdict"]
    assert not result["significant"]


def test_plant_cli_refuses_a_bad_carrier_with_a_clear_message(tmp_path):
    args = ["organism", "plant", "--out", str(tmp_path), "--carrier", "L5H7:pink:0.1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "colour 'pink'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ccsclip-organism.safetensors").exists()
