"""Shadow agreement: does a pruned profile still answer like the full model, on live traffic?

On a sampled share (`CCSCLIP_SHADOW_RATE`) of the requests that carry images and are served by a
profile other than the bundle's baseline (the full model: `baseline_of`), the baseline profile
also embeds the same preprocessed pixels, after the response is computed and off the request's
thread (one background thread; at most `MAX_PENDING` shadow runs wait, beyond that a request is
skipped), and per image:

* zero-shot: `ccsclip_shadow_top1_agreement{profile}`: 1 if the served profile's top-1 label
  is the baseline's (same class embeddings), else 0;
* embed_images: `ccsclip_shadow_embed_cosine{profile}`: the cosine of the two embeddings;

each a metrics.SignedFigure (mean and variance from four counters), and per request
`ccsclip_shadow_requests_total{profile, outcome}`, outcome `sampled`, `skipped` (not drawn, or
the queue was full) or `failed` (the shadow run raised: logged; the request is never affected).
Requests served by the baseline itself record nothing. An unsampled request costs one random
draw; the default rate keeps the extra compute at most 5 % (measured: docs/service.md,
benchmarks/shadow.py).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ccsclip.engine.engine import Engine
from ccsclip.engine.sessions import ProfileInfo
from ccsclip.service.metrics import Metrics
from ccsclip.service.settings import ServiceSettings

log = logging.getLogger(__name__)

MAX_PENDING = 8
Embed = Callable[[str, np.ndarray], np.ndarray]  # (profile, pixels [N, 3, S, S]) -> [N, E]


def baseline_of(profiles: Sequence[ProfileInfo], default: str) -> str | None:
    """The bundle's full profile: no head removed, fp32, not quantised, not derived from another
    (the manifest's default when it is one, else one whose arm is `baseline`, else the first);
    None when the bundle has none."""
    full = [
        p
        for p in profiles
        if not p.heads_removed
        and p.precision == "fp32"
        and p.quantize is None
        and p.base_profile is None
    ]
    for pick in (
        [p for p in full if p.name == default],
        [p for p in full if p.arm == "baseline"],
        full,
    ):
        if pick:
            return pick[0].name
    return None


class ShadowSampler:
    """Samples requests served by pruned profiles and records their agreement with the
    baseline; `observe` is the one call a request handler makes."""

    def __init__(
        self,
        embed: Embed,
        baseline: str | None,
        rate: float,
        metrics: Metrics,
        seed: int | None = None,
    ) -> None:
        self.embed = embed
        self.baseline = baseline
        self.rate = rate
        self.metrics = metrics
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._pending = 0
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def for_engine(
        cls, engine: Engine, embed: Embed, settings: ServiceSettings, metrics: Metrics
    ) -> ShadowSampler:
        """The sampler of a served engine: its baseline (settings, else `baseline_of`), off
        when the rate is 0 or the baseline is not served here."""
        available = [p for p in engine.profiles() if p.available]
        baseline = settings.shadow_baseline or baseline_of(
            available, engine.manifest.default_profile
        )
        if baseline is not None and baseline not in {p.name for p in available}:
            log.warning("shadow agreement off: baseline profile %r is not served", baseline)
            baseline = None
        return cls(embed, baseline, settings.shadow_rate, metrics, settings.shadow_seed)

    def _draw(self, profile: str) -> bool:
        """Whether this request is shadowed (and its `skipped` count when it is not)."""
        with self._lock:
            sampled = self.rate > 0 and self._random.random() < self.rate
            if sampled and self._pending >= MAX_PENDING:
                sampled = False
            if sampled:
                self._pending += 1
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="ccsclip-shadow")
        if not sampled:
            self.metrics.shadow_outcome(profile, "skipped")
        return sampled

    def observe(
        self,
        profile: str,
        pixels: np.ndarray,
        embeddings: np.ndarray,
        classes: np.ndarray | None = None,
    ) -> None:
        """One served batch of images: `embeddings` [N, E] of `profile` for `pixels`; with
        `classes` [C, E] (a zero-shot request) top-1 agreement, else the embedding cosine."""
        if self.baseline is None or profile == self.baseline or len(pixels) == 0:
            return
        if not self._draw(profile):
            return
        assert self._executor is not None
        self._executor.submit(self._run, profile, pixels, embeddings, classes)

    def _run(
        self,
        profile: str,
        pixels: np.ndarray,
        embeddings: np.ndarray,
        classes: np.ndarray | None,
    ) -> None:
        try:
            assert self.baseline is not None
            base = self.embed(self.baseline, pixels)
            if classes is None:
                self.metrics.shadow_cosines(profile, cosines(embeddings, base))
            else:
                self.metrics.shadow_agreement(profile, same_top1(embeddings, base, classes))
            self.metrics.shadow_outcome(profile, "sampled")
        except Exception as exc:  # a shadow run never affects serving: count and log it
            log.warning("shadow run for profile %r failed: %s", profile, exc)
            self.metrics.shadow_outcome(profile, "failed")
        finally:
            with self._lock:
                self._pending -= 1

    def drain(self) -> None:
        """Wait for queued shadow runs (a clean shutdown; benchmarks)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


def cosines(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Row-wise cosine of two [N, E] arrays, clipped to [-1, 1]."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dots = np.sum(a64 * b64, axis=1)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return np.clip(dots / np.maximum(norms, 1e-12), -1.0, 1.0).tolist()


def same_top1(served: np.ndarray, base: np.ndarray, classes: np.ndarray) -> list[bool]:
    """Per image, whether both embeddings' nearest class is the same (the argmax of the
    zero-shot probabilities: softmax is monotone in the cosine)."""
    c64 = classes.astype(np.float64).T
    return (
        np.argmax(served.astype(np.float64) @ c64, axis=1)
        == np.argmax(base.astype(np.float64) @ c64, axis=1)
    ).tolist()
