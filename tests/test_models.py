"""Model loading: registry names, project configs, checkpoints, local-dir, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from ccsclip.errors import CcsclipError, InvalidInputError, NotFoundError, UnsupportedModelError
from ccsclip.models import load_model, weights_sha256


def test_tiny_spec(tiny):
    spec = tiny.spec
    assert (spec.layers, spec.heads, spec.head_width, spec.width) == (3, 4, 16, 64)
    assert (spec.embed_dim, spec.image_size, spec.patch_size, spec.n_tokens) == (32, 32, 8, 17)
    assert spec.context_length == 16


def test_vit_b32_spec(vit_b32):
    spec = vit_b32.spec
    assert (spec.layers, spec.heads, spec.head_width, spec.embed_dim) == (12, 12, 64, 512)
    assert spec.n_tokens == 50 and spec.image_size == 224


def test_vit_b16_spec(vit_b16):
    assert vit_b16.spec.n_tokens == 197 and vit_b16.spec.patch_size == 16


def test_random_init_is_seeded(tiny):
    again = load_model("ccsclip-tiny")
    other = load_model("ccsclip-tiny", seed=1)
    assert again.spec.weights_sha256 == tiny.spec.weights_sha256
    assert other.spec.weights_sha256 != tiny.spec.weights_sha256


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_file_round_trip(tmp_path, tiny, suffix):
    other = load_model("ccsclip-tiny", seed=7)
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in other.model.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = load_model("ccsclip-tiny", pretrained=str(path))
    assert loaded.spec.weights_sha256 == other.spec.weights_sha256 != tiny.spec.weights_sha256


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(InvalidInputError, match="pickled code is refused"):
        load_model("ccsclip-tiny", pretrained=str(path))


def test_checkpoint_of_other_model_is_refused(tmp_path, tiny):
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(path))
    with pytest.raises(InvalidInputError, match="does not fit model"):
        load_model("ccsclip-organism", pretrained=str(path))


def _local_dir(tmp_path, **vision_overrides):
    from open_clip.factory import get_model_config

    from ccsclip.models import register_project_configs

    register_project_configs()
    cfg = get_model_config("ccsclip-tiny")
    cfg["vision_cfg"].update(vision_overrides)
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    return folder


def test_local_dir_with_weights(tmp_path, tiny):
    folder = _local_dir(tmp_path)
    state = {k: v.contiguous() for k, v in tiny.model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    loaded = load_model(f"local-dir:{folder}")
    assert weights_sha256(loaded.model) == tiny.spec.weights_sha256


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"pool_type": "avg"}, "pools with 'avg'"),
        ({"attentional_pool": True}, "attentional pooler"),
        ({"scale_attn": True}, "CustomResidualAttentionBlock"),
        ({"qk_norm": True}, "CustomResidualAttentionBlock"),
    ],
)
def test_refused_architectures(tmp_path, overrides, reason):
    folder = _local_dir(tmp_path, **overrides)
    with pytest.raises(UnsupportedModelError, match=reason) as info:
        load_model(f"local-dir:{folder}")
    assert "local-dir:" in str(info.value)


def test_resnet_tower_refused():
    with pytest.raises(UnsupportedModelError, match="ModifiedResNet"):
        load_model("RN50")


def test_unknown_model_and_tag():
    with pytest.raises(NotFoundError, match="unknown model 'ViT-Q-99'"):
        load_model("ViT-Q-99")
    with pytest.raises(CcsclipError, match="not a known tag"):
        load_model("ccsclip-tiny", pretrained="no-such-tag")


def test_hf_hub_offline_error_is_clear():
    with pytest.raises(CcsclipError, match="hf-hub:org/none"):
        load_model("hf-hub:org/none")
