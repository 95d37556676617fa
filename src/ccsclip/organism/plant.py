"""Planted bias carriers: positive controls for attribution and search (`ccsclip organism plant`).

Each carrier makes images of one colour score higher for every neutral shape query, through one
known component, by a known amount:

- a head (l, h): its query and key weights are zeroed (uniform attention over all tokens), its
  value reads one number per token, fitted by ridge regression so that the mean over tokens is
  1 for images of the colour and 0 otherwise, and its output writes that number along `u`;
- an MLP (l): two hidden units read the same from the class token (`ln_2` input of layer l);
  gelu(x) - gelu(x - c) with x steep in the readout is a ramp that saturates, so the unit is
  fully on for the colour even when pruning weakens its input, and writes along `u`.

`u` is the residual direction that ln_post and proj turn into the direction of the neutral
shape queries' text embeddings (least squares). `strength` is the direct-path score boost
(cosine) an image of the colour gets, averaged over those queries, at planting time. Only the
planted head's (or the two MLP units') weights change. Deterministic: the fit
uses `generate(n, seed, "test")` images, and the same plan gives the same weights.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ccsclip.errors import InvalidInputError
from ccsclip.headref import Head
from ccsclip.heads.resolve import resolve_heads
from ccsclip.heads.walk import ResidualWalk
from ccsclip.models import LoadedModel
from ccsclip.organism import world as W
from ccsclip.organism.probes import bias_queries
from ccsclip.organism.train import images_to_tensor
from ccsclip.zeroshot import class_embeddings

_CARRIER = re.compile(r"^L(\d+)(?:H(\d+)|\.mlp)$")
_GATE = 12.0  # steepness of the planted MLP ramp: off below readout 0.3, on above 0.67
_CAP = 2.0  # where the ramp saturates (in units of the steep input)


class Carrier(BaseModel):
    """One planted carrier: `component` is 'L5H7' (a head) or 'L4.mlp'; colour; strength."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    component: str
    colour: str
    strength: float = Field(gt=0, le=1)

    @field_validator("component")
    @classmethod
    def _component(cls, value: str) -> str:
        if not _CARRIER.match(value):
            raise ValueError(f"component {value!r}: use L<layer>H<head> or L<layer>.mlp")
        return value

    @field_validator("colour")
    @classmethod
    def _colour(cls, value: str) -> str:
        if value not in W.CONCEPTS["colour"]:
            raise ValueError(f"colour {value!r}: one of {', '.join(W.CONCEPTS['colour'])}")
        return value

    @property
    def kind(self) -> Literal["head", "mlp"]:
        return "mlp" if self.component.endswith(".mlp") else "head"

    @property
    def layer(self) -> int:
        return int(_CARRIER.match(self.component).group(1))  # type: ignore[union-attr]

    @property
    def head(self) -> int | None:
        found = _CARRIER.match(self.component).group(2)  # type: ignore[union-attr]
        return None if found is None else int(found)


DEFAULT_PLAN = (
    Carrier(component="L5H7", colour="red", strength=0.08),
    Carrier(component="L3H6", colour="red", strength=0.04),
    Carrier(component="L4.mlp", colour="blue", strength=0.06),
)
"""Two heads of different strengths (last and middle layer, both red) and one MLP (blue).
L5H7 and L3H6 carry almost none of the organism's own colour gaps (`ccsclip attribute`)."""


def parse_carrier(text: str) -> Carrier:
    """'L5H7:red:0.08' -> Carrier (the CLI's --carrier)."""
    pieces = text.split(":")
    if len(pieces) != 3:
        raise InvalidInputError(f"carrier {text!r}: use COMPONENT:COLOUR:STRENGTH (L5H7:red:0.08)")
    try:
        return Carrier(component=pieces[0], colour=pieces[1], strength=float(pieces[2]))
    except ValueError as exc:
        raise InvalidInputError(f"carrier {text!r}: {exc}") from exc


def _check_plan(plan: Sequence[Carrier], layers: int, heads: int) -> None:
    if not plan:
        raise InvalidInputError("nothing to plant: give at least one carrier")
    names = [c.component for c in plan]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"each component can carry one plant; got {names}")
    for c in plan:
        if c.head is not None:
            Head(c.layer, c.head).check_exists(layers, heads)
        elif c.layer >= layers:
            raise InvalidInputError(f"{c.component} does not exist: layers are 0..{layers - 1}")


@torch.inference_mode()
def _features(visual, images: torch.Tensor, carrier: Carrier) -> torch.Tensor:
    """What the carrier reads, per image [N, D]: mean over tokens of ln_1 input (head) or the
    class token's ln_2 input (MLP), in the model as planted so far."""
    for step in ResidualWalk(visual, images):
        if step.layer == carrier.layer:
            if carrier.kind == "head":
                return step.block.ln_1(step.resid_pre).mean(dim=1)
            return step.block.ln_2(step.resid_mid)[:, 0]
    raise AssertionError("layer checked before")


def _ridge(features: torch.Tensor, target: torch.Tensor, alpha: float = 1e-2):
    """w, b with features @ w + b ~ target (ridge, float64)."""
    x = features.double()
    mean, y_mean = x.mean(0), target.double().mean()
    xc = x - mean
    gram = xc.T @ xc + alpha * len(x) * torch.eye(x.shape[1], dtype=x.dtype)
    w = torch.linalg.solve(gram, xc.T @ (target.double() - y_mean))
    return w, y_mean - mean @ w


def _write_direction(loaded: LoadedModel) -> tuple[torch.Tensor, float]:
    """(u [D], the mean over neutral shape queries of text . G(u)): u is the residual direction
    that ln_post + proj map to the queries' mean direction."""
    model, visual = loaded.model, loaded.model.visual
    texts = [q["text"] for q in bias_queries()]
    with torch.inference_mode():
        mean_query = class_embeddings(model, loaded.tokenizer, texts, ["{}"]).mean(0).double()
    target = F.normalize(mean_query, dim=0)
    with torch.no_grad():
        eye = torch.eye(visual.proj.shape[0], dtype=torch.float64)
        gmat = (
            visual.ln_post.weight.double() * (eye - eye.mean(1, keepdim=True))
        ) @ visual.proj.double()
        u = torch.linalg.lstsq(gmat.T, target.unsqueeze(1)).solution.squeeze(1)
        return u, float(mean_query @ (u @ gmat))


@torch.inference_mode()
def _scale(visual, images: torch.Tensor) -> float:
    """Mean per-image factor 1/sigma / norm of the frozen ln_post map over the fit images."""
    captured: dict[str, torch.Tensor] = {}
    hook = visual.ln_post.register_forward_pre_hook(
        lambda _m, args: captured.setdefault("r", args[0])
    )
    try:
        visual(images)
    finally:
        hook.remove()
    r = captured["r"]
    ln = visual.ln_post
    inv_sigma = torch.rsqrt(r.var(-1, unbiased=False) + ln.eps)
    return float((inv_sigma / (ln(r) @ visual.proj).norm(dim=-1)).mean())


@torch.no_grad()
def _plant_head(visual, carrier: Carrier, w, b, direction: torch.Tensor) -> None:
    attn = resolve_heads(visual)[carrier.layer]
    d, width = attn.head_dim, attn.embed_dim
    h = carrier.head
    rows = slice(h * d, (h + 1) * d)
    for offset in (0, width):  # query and key: zero -> uniform attention
        attn.in_proj_weight[offset:][rows] = 0
        attn.in_proj_bias[offset:][rows] = 0
    value_rows = slice(2 * width + h * d, 2 * width + (h + 1) * d)
    attn.in_proj_weight[value_rows] = 0
    attn.in_proj_bias[value_rows] = 0
    attn.in_proj_weight[2 * width + h * d] = w.to(attn.in_proj_weight)
    attn.in_proj_bias[2 * width + h * d] = float(b)
    attn.out_proj.weight[:, rows] = 0
    attn.out_proj.weight[:, h * d] = direction.to(attn.out_proj.weight)


@torch.no_grad()
def _plant_mlp(visual, carrier: Carrier, w, b, direction: torch.Tensor) -> list[int]:
    """Rewire the MLP's two least-used hidden units (smallest output weights) into a saturating
    ramp gelu(x) - gelu(x - cap), x = gate * (readout - 0.5); returns their indices."""
    block = visual.transformer.resblocks[carrier.layer]
    if not isinstance(block.ls_2, torch.nn.Identity):
        raise InvalidInputError("planting into an MLP with layer scale is not supported")
    fc, proj = block.mlp.c_fc, block.mlp.c_proj
    units = [int(i) for i in proj.weight.norm(dim=0).argsort()[:2]]
    for unit, shift, sign in ((units[0], 0.0, 1.0), (units[1], _CAP, -1.0)):
        fc.weight[unit] = (_GATE * w).to(fc.weight)
        fc.bias[unit] = float(_GATE * (b - 0.5) - shift)
        proj.weight[:, unit] = (sign * direction / _CAP).to(proj.weight)
    return units


def plant(
    loaded: LoadedModel, plan: Sequence[Carrier], seed: int = 0, n_images: int = 600
) -> dict[str, Any]:
    """Plant every carrier of `plan` into `loaded.model` in place; returns the card's record."""
    spec = loaded.spec
    _check_plan(plan, spec.layers, spec.heads)
    model = loaded.model.float().eval()
    visual = model.visual
    mean, std = loaded.preprocess_cfg.get("mean"), loaded.preprocess_cfg.get("std")
    batch = W.generate(n_images, seed, "test")
    images = images_to_tensor(batch.images, mean, std)
    colours = torch.from_numpy(batch.labels[:, W.CONCEPT_NAMES.index("colour")])
    u, reach = _write_direction(loaded)
    records = []
    for carrier in plan:  # in order: later carriers are fitted on the model planted so far
        target = (colours == W.CONCEPTS["colour"].index(carrier.colour)).double()
        w, b = _ridge(_features(visual, images, carrier), target)
        s = _scale(visual, images)
        alpha = carrier.strength / (s * reach)
        direction = alpha * u
        record: dict[str, Any] = carrier.model_dump()
        if carrier.kind == "head":
            _plant_head(visual, carrier, w, b, direction)
        else:
            record["units"] = _plant_mlp(visual, carrier, w, b, direction)
        readout = _features(visual, images, carrier).double() @ w + b
        record["readout"] = {
            "colour_mean": float(readout[target == 1].mean()),
            "other_mean": float(readout[target == 0].mean()),
        }
        records.append(record)
    return {
        "plan": records,
        "seed": seed,
        "fit_images": n_images,
        "direction": "least-squares residual direction that ln_post and proj map to the mean "
        "of the neutral shape queries' text embeddings",
        "strength": "direct-path score boost (cosine) of an image of the colour, mean over the "
        "neutral shape queries, at planting time",
    }
