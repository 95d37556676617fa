"""`ccsclip ab judge` on real ccsclip servers: the counters it reads are the ones `bentoml serve`
exports, and its sums are the figures counted here by hand from the servers' own answers.

Two servers of one bundle, every pruned request shadowed (`CCSCLIP_SHADOW_RATE=1`): server A
(two workers: its series are merged) gets a live colour gallery per profile and N neutral
searches through each, plus zero-shot and embedding requests through the pruned profile; server
B gets the same kind of traffic (other seeded draws from the same queries and images) through
the pruned profile only. A against itself by profile is the A/B; A's pruned arm against B's, by
`instance`, is an A/A whose true difference is zero, which must never be rolled back however
often the judge looks. Two answers are known beyond that: a profile seen to disagree with the
full model is rolled back on agreement with no margin, and the A/A is promoted on a margin its
intervals fit inside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from service_fixtures import (  # noqa: E402
    DEFAULT,
    PRUNED,
    HttpClient,
    Server,
    b64,
    http_ready,
    make_world,
    start_http,
    wait_ready,
)
from test_live_bias import QUERIES, hand_null, hand_skews  # noqa: E402
from test_shadow import outcomes, wait_for  # noqa: E402

from ccsclip.ab.verdict import EXIT_CODES, FigureResult, JudgeResult  # noqa: E402
from ccsclip.probeset import load_probe  # noqa: E402

N = 60  # neutral searches per arm and server
K = 6
ITEMS = 24  # gallery items: the bias probe's first images, with their `colour`
IMAGES = 16  # images per pruned request kind (zero-shot, embed), in batches of BATCH
BATCH = 8  # the servers' CCSCLIP_MAX_IMAGES_PER_REQUEST in service_fixtures.LIMITS
LOOK_EVERY = 10  # searches between two looks of the A/A judge while B's traffic runs
MIN_SAMPLES = 10  # small enough for every figure of every arm to reach it
# Neutral: none names a colour, the gallery's declared attribute.
NEUTRAL = (*QUERIES, "a shape", "a circle", "a square", "an image", "a drawing", "a pattern")


@dataclass
class Served:
    """One server: where its page is, and the figures computed here from its answers."""

    metrics_url: str
    instance: str
    excess: dict[str, list[float]] = field(default_factory=dict)  # per profile, per search
    agreement: list[float] = field(default_factory=list)  # per image: 1 if top-1 labels agree
    cosine: list[float] = field(default_factory=list)  # per image: pruned against baseline
    looks: list[str] = field(default_factory=list)  # the A/A judge's decisions, look by look


def served(server: Server) -> Served:
    port = server.ports["http"]
    return Served(f"http://127.0.0.1:{port}/metrics", f"127.0.0.1:{port}")


def judge(*args: str) -> tuple[subprocess.CompletedProcess, JudgeResult | None]:
    """The CLI as a shell or a Job runs it; its JSON answer when it printed one."""
    proc = subprocess.run(
        [sys.executable, "-m", "ccsclip.cli", "ab", "judge", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    result = JudgeResult.model_validate(json.loads(proc.stdout)) if proc.stdout.strip() else None
    return proc, result


def by_figure(result: JudgeResult) -> dict[str, FigureResult]:
    return {f.figure: f for f in result.figures}


def aa_selectors(a: Served, b: Served) -> tuple[str, str]:
    return (
        f'{{instance="{a.instance}", profile="{PRUNED}"}}',
        f'{{instance="{b.instance}", profile="{PRUNED}"}}',
    )


def look_aa(a: Served, b: Served) -> str:
    """One look of the A/A judge (the library, as the CLI calls it) at both pages now."""
    from ccsclip.ab.figures import FIGURES
    from ccsclip.ab.selectors import parse_selector
    from ccsclip.ab.sources import MetricsPageSource
    from ccsclip.ab.verdict import JudgeSettings
    from ccsclip.ab.verdict import judge as judge_arms

    control, candidate = (parse_selector(s) for s in aa_selectors(a, b))
    settings = JudgeSettings(0.05, MIN_SAMPLES, {}, "none")
    source = MetricsPageSource([a.metrics_url, b.metrics_url])
    return judge_arms(source, control, candidate, FIGURES, settings).decision


class Traffic:
    """Drives one server as users would and counts by hand what its answers should add."""

    def __init__(self, client: HttpClient, rows: list, seed: int) -> None:
        self.client = client
        self.rows = rows
        self.rng = np.random.default_rng(seed)
        colours = [attrs["colour"] for _, attrs in rows]
        self.shares = {v: n / len(colours) for v, n in Counter(colours).items()}
        self.null = hand_null(list(Counter(colours).values()), K)
        self.labels = sorted({attrs["shape"] for _, attrs in rows})

    def gallery(self, profile: str) -> str:
        """A live gallery of the rows for `profile`, declaring `colour`."""
        name = f"colours-{profile}"
        self.client.post(
            "/v1/galleries/create",
            {"gallery": name, "backend": "exact", "profile": profile,
             "bias_attributes": ["colour"]},
        )  # fmt: skip
        items = [
            {"id": f"item-{i}", "image": b64(path.read_bytes()), "metadata": attrs}
            for i, (path, attrs) in enumerate(self.rows)
        ]
        for start in range(0, len(items), BATCH):
            batch = {"gallery": name, "items": items[start : start + BATCH]}
            self.client.post("/v1/galleries/upsert", batch)
        return name

    def searches(self, profile: str, look: Callable[[], None] | None = None) -> list[float]:
        """N neutral searches on the profile's gallery; each one's observed MaxSkew@k minus the
        null, from its hits. `look` runs after every LOOK_EVERY searches."""
        name, excess = self.gallery(profile), []
        for i, query in enumerate(self.rng.choice(NEUTRAL, N)):
            body = {"gallery": name, "text": str(query), "k": K}
            hits = self.client.post("/v1/galleries/search", body)["hits"]
            values = [hit["metadata"]["colour"] for hit in hits]
            assert len(values) == K
            excess.append(max(hand_skews(values, self.shares).values()) - self.null)
            if look is not None and (i + 1) % LOOK_EVERY == 0:
                look()
        return excess

    def images(self) -> list[bytes]:
        chosen = self.rng.choice(len(self.rows), IMAGES, replace=False)
        return [self.rows[i][0].read_bytes() for i in chosen]

    def zero_shot(self) -> list[float]:
        """IMAGES images through the pruned profile (shadowed) and the baseline (not): per
        image, whether the two top-1 labels agree."""
        images, top = self.images(), {}
        for profile in (PRUNED, DEFAULT):
            top[profile] = [
                result["top"][0]["label"]
                for start in range(0, IMAGES, BATCH)
                for result in self.client.zero_shot(
                    images[start : start + BATCH], self.labels, profile=profile
                )["results"]
            ]
        return [float(a == b) for a, b in zip(top[PRUNED], top[DEFAULT], strict=True)]

    def embeddings(self) -> list[float]:
        """IMAGES images embedded by both profiles (the pruned requests shadowed): per image,
        the cosine of the two embeddings, computed here."""
        images, emb = self.images(), {}
        for profile in (PRUNED, DEFAULT):
            emb[profile] = np.array(
                [
                    item["values"]
                    for start in range(0, IMAGES, BATCH)
                    for item in self.client.embed_images(
                        [(image, profile) for image in images[start : start + BATCH]]
                    )
                ],
                dtype=np.float64,
            )
        a, b = emb[PRUNED], emb[DEFAULT]
        return list(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))

    def shadowed(self, record: Served) -> None:
        """Zero-shot and embedding requests through the pruned profile, then wait until the
        shadow runs (after each response, off the request's thread) have all been counted."""
        record.agreement = self.zero_shot()
        record.cosine = self.embeddings()
        requests = 2 * IMAGES // BATCH
        text = wait_for(
            self.client.metrics,
            lambda t: sum(outcomes(t, PRUNED).values()) >= requests,
        )
        # every one shadowed: none skipped (rate 1, a queue never full here), none failed
        assert outcomes(text, PRUNED) == {"sampled": requests}, outcomes(text, PRUNED)
        assert outcomes(text, DEFAULT) == {}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Server A (both profiles' traffic) and B (the pruned profile's), driven to completion;
    B's traffic runs while the A/A judge looks after every LOOK_EVERY searches."""
    root = tmp_path_factory.mktemp("ab-end-to-end")
    world = make_world(root / "world")
    rows = list(load_probe(world.world / "bias-shape-colour").rows)[:ITEMS]
    assert len({attrs["colour"] for _, attrs in rows}) >= 2
    started = []
    try:
        for name, workers in (("a", 2), ("b", 1)):  # both start at once, then both wait
            extra = {"CCSCLIP_SHADOW_RATE": "1", "CCSCLIP_GALLERY_ROOT": str(root / f"live-{name}")}
            started.append(start_http(world, root, workers=workers, name=name, extra=extra))
        for server in started:
            wait_ready(server, http_ready)
        a, b = (served(s) for s in started)
        client_a, client_b = (HttpClient(s) for s in started)
        drive_a = Traffic(client_a, rows, seed=1)
        a.excess = {p: drive_a.searches(p) for p in (DEFAULT, PRUNED)}
        drive_a.shadowed(a)
        drive_b = Traffic(client_b, rows, seed=2)

        def look() -> None:
            b.looks.append(look_aa(a, b))

        b.excess = {PRUNED: drive_b.searches(PRUNED, look)}
        drive_b.shadowed(b)
        look()
        for client in (client_a, client_b):
            client.close()
        yield a, b
    finally:
        for server in started:
            server.stop()
        for server in started:
            assert server.survivors == [], server.name


def test_the_judge_reads_the_counts_made_by_hand_from_the_answers(servers):
    """A/B on server A by profile: the judge's n and means per arm are the searches and images
    sent and the figures computed here from the hits and the two profiles' direct answers."""
    a, _ = servers
    arms = ("--control", f'{{profile="{DEFAULT}"}}', "--candidate", f'{{profile="{PRUNED}"}}')
    proc, result = judge("--metrics-url", a.metrics_url, *arms, "--min-samples", str(N + 1))
    assert result is not None, proc.stderr
    assert proc.returncode == 3 and result.decision == "keep collecting", proc.stderr
    figures = by_figure(result)
    skew = figures["excess_maxskew"]
    for summary, profile in ((skew.control, DEFAULT), (skew.candidate, PRUNED)):
        assert summary.n == N == len(a.excess[profile])
        assert summary.mean == pytest.approx(np.mean(a.excess[profile]), abs=1e-9)
    assert skew.harm == pytest.approx(np.mean(a.excess[PRUNED]) - np.mean(a.excess[DEFAULT]))
    for key, hand in (("top1_agreement", a.agreement), ("embed_cosine", a.cosine)):
        shadow = figures[key]
        assert shadow.control.full_model and shadow.control.mean == 1.0  # the baseline
        assert shadow.candidate.n == IMAGES == len(hand)
        assert shadow.candidate.mean == pytest.approx(np.mean(hand), abs=1e-5), key
    for figure in result.figures:
        assert figure.verdict == "undecided" and "below the minimum sample" in figure.reason

    proc, result = judge("--metrics-url", a.metrics_url, *arms, "--min-samples", str(MIN_SAMPLES))
    assert result is not None, proc.stderr
    assert proc.returncode in {0, 1, 3}, proc.stderr
    assert proc.returncode == result.exit_code == EXIT_CODES[result.decision]
    assert all("below the minimum sample" not in f.reason for f in result.figures)

    # A known answer: a profile seen to disagree with the full model even once is worse than
    # it, so with no margin on agreement the judge rolls it back; one never seen to disagree
    # may yet agree always, and is neither rolled back nor promoted.
    proc, result = judge(
        "--metrics-url", a.metrics_url, *arms, "--figure", "top1_agreement",
        "--margin-top1-agreement", "0", "--min-samples", str(MIN_SAMPLES),
    )  # fmt: skip
    assert result is not None, proc.stderr
    expected = "roll back" if 0.0 in a.agreement else "keep collecting"
    assert result.decision == expected and proc.returncode == EXIT_CODES[expected], result


def test_an_aa_pair_of_servers_is_never_rolled_back(servers):
    """The pruned profile on two servers of one bundle, arms by `instance`: the same
    distribution of traffic on both, so the true difference is zero. Neither a look after
    every LOOK_EVERY searches nor the CLI's final look rolls it back."""
    a, b = servers
    assert len(b.looks) == N // LOOK_EVERY + 1 and "roll back" not in b.looks, b.looks
    control, candidate = aa_selectors(a, b)
    proc, result = judge(
        "--metrics-url", a.metrics_url, "--metrics-url", b.metrics_url,
        "--control", control, "--candidate", candidate,
        "--full-model", "none", "--min-samples", str(MIN_SAMPLES),
    )  # fmt: skip
    assert result is not None, proc.stderr
    assert proc.returncode in {0, 3} and proc.returncode == result.exit_code, result
    assert result.decision == b.looks[-1]  # the last look saw the same pages
    figures = by_figure(result)
    skew = figures["excess_maxskew"]
    for summary, record in ((skew.control, a), (skew.candidate, b)):  # instance by instance
        assert summary.n == N and summary.mean == pytest.approx(np.mean(record.excess[PRUNED]))
    for key in ("top1_agreement", "embed_cosine"):
        assert figures[key].control.n == figures[key].candidate.n == IMAGES
        assert not figures[key].control.full_model and not figures[key].candidate.full_model

    # A margin that the intervals of N searches per arm fit inside: the A/A is promoted.
    proc, result = judge(
        "--metrics-url", a.metrics_url, "--metrics-url", b.metrics_url,
        "--control", control, "--candidate", candidate, "--figure", "excess_maxskew",
        "--margin-excess-maxskew", "0.25", "--min-samples", str(MIN_SAMPLES),
    )  # fmt: skip
    assert result is not None, proc.stderr
    assert proc.returncode == 0 and result.decision == "promote", result
