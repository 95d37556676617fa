"""The embedded default: training step, loss, shipped weights and their quality."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F

from ccsclip.models import embedded_weights_path, load_model
from ccsclip.organism import world as W
from ccsclip.organism.train import (
    TrainConfig,
    evaluate_attributes,
    init_positional_embedding,
    multi_positive_loss,
    train,
)


def test_multi_positive_loss_reduces_to_clip_loss_with_one_positive():
    generator = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(8, 16, generator=generator), dim=-1)
    text = F.normalize(torch.randn(8, 16, generator=generator), dim=-1)
    scale = torch.tensor(10.0)
    ours = multi_positive_loss(image, text, scale, torch.eye(8, dtype=torch.bool))
    reference = open_clip.ClipLoss()(image, text, scale)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-6)
    positives = torch.eye(8, dtype=torch.bool)
    positives[0, 1] = True  # caption 1 is also true of image 0
    assert multi_positive_loss(image, text, scale, positives).item() != pytest.approx(ours.item())


def test_positional_embedding_starts_from_sincos():
    loaded = load_model("ccsclip-organism")
    init_positional_embedding(loaded.model.visual)
    pos = loaded.model.visual.positional_embedding
    assert torch.all(pos[0] == 0) and pos[1:].abs().max() <= 0.5 + 1e-6
    assert pos[1:].std() > 0.1


def test_smoke_training_lowers_the_loss():
    cfg = TrainConfig(steps=30, batch_size=32, warmup=5, eval_images=30, lr=2e-3, bias_per_cell=1)
    _, card = train(cfg, progress=False)
    assert card["steps"] == 30
    assert card["final_loss"] < card["first_loss"] - 0.1
    assert set(card["zero_shot"]) == set(W.CONCEPT_NAMES)


def test_shipped_checkpoint_loads_by_name_and_beats_chance():
    path = embedded_weights_path("ccsclip-organism")
    card = json.loads(path.with_name("ccsclip-organism.card.json").read_text())
    loaded = load_model("ccsclip-organism", "embedded")
    assert loaded.spec.weights_sha256 == card["weights_sha256"]
    mean, std = loaded.preprocess_cfg["mean"], loaded.preprocess_cfg["std"]
    with torch.no_grad():
        result = evaluate_attributes(loaded.model, loaded.tokenizer, mean, std, 300, seed=777)
    for concept, row in result.items():
        assert row["accuracy"] > row["chance"] + 0.25, (concept, row)
