"""Model loading: open_clip names, hf-hub, local-dir, checkpoints and the project's configs."""

from ccsclip.models.checks import check_decomposable
from ccsclip.models.loading import (
    EMBEDDED_TAG,
    LoadedModel,
    build_spec,
    embedded_weights_path,
    load_model,
    project_models,
    read_state_dict,
    register_project_configs,
    weights_sha256,
)
from ccsclip.models.spec import ModelSpec

__all__ = [
    "EMBEDDED_TAG",
    "LoadedModel",
    "ModelSpec",
    "build_spec",
    "check_decomposable",
    "embedded_weights_path",
    "load_model",
    "project_models",
    "read_state_dict",
    "register_project_configs",
    "weights_sha256",
]
