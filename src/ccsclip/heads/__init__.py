"""Head-resolved attention, hook points, the residual walk, soft ablation, decomposition and
streaming statistics (docs/design.md §3, §6)."""

from ccsclip.heads.ablation import Ablation, ablated, apply_ablation, clear_ablation
from ccsclip.heads.attention import HeadResolvedAttention, HookPoint
from ccsclip.heads.decompose import Decomposition, decompose
from ccsclip.heads.layers import parse_layers
from ccsclip.heads.resolve import hook_points, hook_z_name, resolve_heads
from ccsclip.heads.stats import (
    HeadMeans,
    HeadMoments,
    accumulate,
    all_reduce,
    load_means,
    load_statistics,
    save_statistics,
)
from ccsclip.heads.walk import BlockStep, ResidualWalk, run_with_cache

__all__ = [
    "Ablation",
    "BlockStep",
    "Decomposition",
    "HeadMeans",
    "HeadMoments",
    "HeadResolvedAttention",
    "HookPoint",
    "ResidualWalk",
    "ablated",
    "accumulate",
    "all_reduce",
    "apply_ablation",
    "clear_ablation",
    "decompose",
    "hook_points",
    "hook_z_name",
    "load_means",
    "load_statistics",
    "parse_layers",
    "resolve_heads",
    "run_with_cache",
    "save_statistics",
]
