"""The strict pydantic base of every artefact schema, and reading a JSON file into one.

Artefacts (bundle manifest, CCS table, profile, gallery metadata) reject unknown fields, so a typo
or a file of a newer schema is an error that names the field instead of a value silently
ignored. Torch-free: both halves of the pipeline read these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ccsclip.errors import InvalidInputError, NotFoundError


class Strict(BaseModel):
    """Unknown fields are rejected; `schema_` style aliases may be filled by field name too."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


M = TypeVar("M", bound=BaseModel)


def read_json_model(path: str | Path, model: type[M], what: str, missing: str) -> M:
    """The JSON file at `path` validated into `model`.

    NotFoundError(`missing`) when the file does not exist; InvalidInputError naming the file,
    `what` it should be and pydantic's field errors when it is not valid JSON or not valid.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(missing)
    try:
        return model.model_validate(json.loads(path.read_text("utf-8")))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise InvalidInputError(f"{path} is not a valid {what}: {exc}") from exc
