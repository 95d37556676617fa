"""Live bias on real traffic, with a real `bentoml serve` (two workers: the series are merged).

Two live galleries hold the same images (the bias probe's, with their `colour` attribute), one
per profile, both declaring `bias_attributes: ["colour"]`; neutral text searches on each must
add to per-profile series that match the skew computed here by hand from the hits, and the
excess over the null (k random items) to four counters that match it too. The null is checked
against a brute-force enumeration and an independent simulation; the store's per-value counts
against a recount on every backend; live bias on a Milvus gallery over gRPC.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
from k8s_helpers import dashboard_metric_names  # noqa: E402
from service_fixtures import (  # noqa: E402
    DEFAULT,
    PRUNED,
    ApiError,
    HttpClient,
    b64,
    http_ready,
    make_world,
    metric_samples,
    start_http,
    wait_ready,
)

from ccsclip.probeset import load_probe  # noqa: E402

QUERIES = ("a photo of a shape", "a picture", "an object", "a photo", "something")
K = 6


def hand_skews(values: list[str], shares: dict[str, float]) -> dict[str, float]:
    counts = Counter(values)
    return {v: math.log((n / len(values)) / shares[v]) for v, n in counts.items()}


def hand_null(counts: list[int], k: int) -> float:
    """E[MaxSkew@k] of k items drawn from a pool with these value counts: a sum over every
    count vector c with its multivariate hypergeometric probability prod C(n, c) / C(N, k)."""
    total = sum(counts)
    out = 0.0
    for drawn in itertools.product(*(range(min(n, k) + 1) for n in counts)):
        if sum(drawn) != k:
            continue
        p = math.prod(math.comb(n, c) for n, c in zip(counts, drawn, strict=True))
        skew = max(math.log((c / k) / (n / total)) for n, c in zip(counts, drawn, strict=True) if c)
        out += p / math.comb(total, k) * skew
    return out


def excess_sums(values: list[float]) -> dict[str, float]:
    """The four SignedFigure counters of a list of per-search values."""
    return {
        "observations": len(values),
        "positive": sum(max(v, 0.0) for v in values),
        "negative": sum(max(-v, 0.0) for v in values),
        "squares": sum(v * v for v in values),
    }


def figure_counters(text: str, name: str, labels: dict[str, str]) -> dict[str, float]:
    out = {}
    for part in ("observations", "positive", "negative", "squares"):
        found = [v for lab, v in metric_samples(text, f"{name}_{part}_total") if lab == labels]
        assert len(found) == 1, (part, found)
        out[part] = found[0]
    return out


# --------------------------------------------------------------------------- the null


@pytest.mark.parametrize(
    ("colours", "k"), [("rrrggb", 3), ("rrrrggggbbbbyy", 5), ("rg", 1), ("rrrgggggggbb", 12)]
)
def test_the_null_equals_a_brute_force_enumeration_of_every_draw(colours, k):
    from ccsclip.fairness import expected_max_skew, max_skew_at_k

    pool = list(colours)
    draws = list(itertools.combinations(range(len(pool)), k))
    brute = 0.0
    for chosen in draws:  # MaxSkew@k of the ranking that puts exactly these items first
        scores = np.zeros(len(pool))
        scores[list(chosen)] = 1.0
        brute += max_skew_at_k(scores, pool, k) / len(draws)
    counts = tuple(Counter(pool).values())
    assert expected_max_skew(counts, k) == pytest.approx(brute, abs=1e-9)
    assert hand_null(list(counts), k) == pytest.approx(brute, abs=1e-9)


def test_the_null_matches_a_seeded_simulation_and_its_monte_carlo_fallback():
    """A pool too large to enumerate: random permutations (drawn here, independently of the
    code) agree with the exact sum; the Monte Carlo path (used beyond the exact budget) does
    too, within its stated standard error."""
    from ccsclip.fairness import exact_expected_max_skew, simulated_expected_max_skew

    counts, k = (400, 250, 250, 100), 10
    pool = np.repeat(np.arange(4), counts)
    rng = np.random.default_rng(7)
    shares = np.asarray(counts) / pool.size
    sims = []
    for _ in range(20_000):
        top = rng.choice(pool.size, k, replace=False)
        drawn = np.bincount(pool[top], minlength=4)
        sims.append(np.log((drawn[drawn > 0] / k / shares[drawn > 0]).max()))
    exact = exact_expected_max_skew(counts, k)
    se = np.std(sims) / np.sqrt(len(sims))
    assert abs(np.mean(sims) - exact) < 4 * se, (np.mean(sims), exact, se)
    mean, mc_se, draws = simulated_expected_max_skew(counts, k)
    assert mc_se <= 0.005 and draws >= 4096
    assert abs(mean - exact) < 4 * mc_se
    assert simulated_expected_max_skew(counts, k) == (mean, mc_se, draws)  # seeded


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("live-bias"))


def test_live_skew_series_per_profile_match_the_hits(world, tmp_path):
    probe = load_probe(world.world / "bias-shape-colour")
    rows = list(probe.rows)[:24]
    colours = [attrs["colour"] for _, attrs in rows]
    shares = {v: n / len(rows) for v, n in Counter(colours).items()}
    assert len(shares) >= 2
    server = start_http(
        world, tmp_path, workers=2, extra={"CCSCLIP_GALLERY_ROOT": str(tmp_path / "live")}
    )
    try:
        wait_ready(server, http_ready)
        client = HttpClient(server)
        galleries = {DEFAULT: "colours-a", PRUNED: "colours-b"}
        items = [
            {"id": f"item-{i}", "image": b64(path.read_bytes()), "metadata": attrs}
            for i, (path, attrs) in enumerate(rows)
        ]
        for profile, name in galleries.items():
            client.post(
                "/v1/galleries/create",
                {"gallery": name, "backend": "exact", "profile": profile,
                 "bias_attributes": ["colour"]},
            )  # fmt: skip
            for start in range(0, len(items), 8):
                client.post(
                    "/v1/galleries/upsert", {"gallery": name, "items": items[start : start + 8]}
                )
        client.post("/v1/galleries/create", {"gallery": "undeclared", "backend": "exact"})
        client.post("/v1/galleries/upsert", {"gallery": "undeclared", "items": items[:8]})
        with pytest.raises(ApiError) as bad:  # a declared attribute must be an identifier
            client.post("/v1/galleries/create", {"gallery": "bad", "bias_attributes": ["a b"]})
        assert bad.value.status == 400 and "bias_attributes" in bad.value.body["field"]

        expected_counts: dict[tuple[str, str], int] = Counter()
        maxskews: dict[str, list[float]] = {DEFAULT: [], PRUNED: []}
        null = hand_null(list(Counter(colours).values()), K)
        for profile, name in galleries.items():
            for query in QUERIES:
                body = {"gallery": name, "text": query, "k": K}
                hits = client.post("/v1/galleries/search", body)["hits"]
                values = [hit["metadata"]["colour"] for hit in hits]
                assert len(values) == K
                for value in values:
                    expected_counts[(profile, value)] += 1
                maxskews[profile].append(max(hand_skews(values, shares).values()))
            # a search filtered on the attribute asks for it on purpose: not counted
            client.post(
                "/v1/galleries/search",
                {"gallery": name, "text": "a photo", "k": K, "filter": {"colour": colours[0]}},
            )
        client.post("/v1/galleries/search", {"gallery": "undeclared", "text": "a photo", "k": 3})

        text = client.metrics()
        scraped = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        live_series = dashboard_metric_names(live_bias=True) - dashboard_metric_names()
        assert live_series and live_series <= scraped, sorted(live_series - scraped)
        got_counts = {
            (labels["profile"], labels["value"]): value
            for labels, value in metric_samples(text, "ccsclip_live_topk_items_total")
            if labels["attribute"] == "colour" and value
        }
        assert got_counts == dict(expected_counts)
        assert {labels["gallery"] for labels, _ in metric_samples(
            text, "ccsclip_live_topk_items_total")} == set(galleries.values())  # fmt: skip
        got_shares = {
            labels["value"]: value
            for labels, value in metric_samples(text, "ccsclip_live_gallery_share")
            if labels["gallery"] == "colours-a"
        }
        assert got_shares == pytest.approx(shares)
        for profile in galleries:
            labels = {"profile": profile, "gallery": galleries[profile], "attribute": "colour"}
            sums = [
                v for lab, v in metric_samples(text, "ccsclip_live_maxskew_sum") if lab == labels
            ]
            counts = [
                v for lab, v in metric_samples(text, "ccsclip_live_maxskew_count") if lab == labels
            ]
            assert counts == [len(QUERIES)]
            assert sums == [pytest.approx(sum(maxskews[profile]), abs=1e-9)]
            # the excess over the null, per search, as four counters; the nulls' sum beside
            excess = [m - null for m in maxskews[profile]]
            got = figure_counters(text, "ccsclip_live_excess_maxskew", labels)
            assert got == pytest.approx(excess_sums(excess), abs=1e-9)
            nulls = [v for lab, v in metric_samples(text, "ccsclip_live_null_maxskew_total")
                     if lab == labels]  # fmt: skip
            assert nulls == [pytest.approx(len(QUERIES) * null, abs=1e-9)]
            # the pooled Skew@k per value, as the recording rule computes it from the series
            total = sum(n for (p, _), n in got_counts.items() if p == profile)
            for (p, value), n in got_counts.items():
                if p == profile:
                    pooled = math.log((n / total) / got_shares[value])
                    hand = math.log((expected_counts[(p, value)] / total) / shares[value])
                    assert pooled == pytest.approx(hand)
        client.close()
    finally:
        server.stop()
        assert server.survivors == []


# --------------------------------------------------------------------------- per-value counts


def _counts_meta(name: str, backend: str):
    from ccsclip.engine.galleries.meta import GalleryModel, GalleryProfile, LiveGalleryMeta

    return LiveGalleryMeta(
        name=name,
        uid=f"{name}-uid",
        created_at=0.0,
        backend=backend,
        params={},
        model=GalleryModel(name="m", weights_sha256="w"),
        profile=GalleryProfile(name="p", sha256="s"),
        embed_dim=8,
        bundle_manifest_sha256="b",
        bias_attributes=["colour", "big"],
    )


def _recount(gallery) -> dict[str, dict[str, int]]:
    from ccsclip.engine.galleries.counts import ValueCounts

    metadata = [m for _, _, batch in gallery.items() for m in batch]
    return ValueCounts.of(["colour", "big"], metadata).to_dict()


def _write_and_check(gallery, reopen) -> None:
    """Upserts (new ids, replaced ids with other values, an item without the attribute),
    deletes: the kept counts equal a recount after each step, and after reopening."""
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue"]

    def vectors(n: int) -> np.ndarray:
        v = rng.standard_normal((n, 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    ids = [f"i{i}" for i in range(30)]
    metadata = [{"colour": colours[i % 3], "big": i % 4 == 0} for i in range(30)]
    metadata[5] = {"shape": "disc"}  # no declared attribute: counted as `none`
    gallery.upsert(ids, vectors(30), metadata)
    assert gallery.value_counts() == _recount(gallery)
    assert gallery.value_counts()["colour"] == {"blue": 9, "green": 10, "none": 1, "red": 10}
    # replace ten ids with other values, and add two
    replaced = [f"i{i}" for i in range(10)] + ["j0", "j1"]
    gallery.upsert(replaced, vectors(12), [{"colour": "red", "big": False}] * 12)
    assert gallery.value_counts() == _recount(gallery)
    gallery.delete(["i12", "i13", "i14", "nope"])
    counts = gallery.value_counts()
    assert counts == _recount(gallery)
    assert sum(counts["colour"].values()) == 29 and counts["colour"]["red"] == 17
    again = reopen()
    assert again.value_counts() == counts


@pytest.mark.parametrize("backend", ["exact", "hnsw"])
def test_embedded_galleries_keep_per_value_counts(tmp_path, backend):
    from ccsclip.engine.galleries.local import LocalGallery, create_local

    meta = _counts_meta("counted", backend)
    create_local(tmp_path, meta)
    gallery = LocalGallery(tmp_path / "counted", meta, compact_bytes=4096)
    reader = LocalGallery(tmp_path / "counted", meta)  # another process's view: follows the log
    _write_and_check(gallery, lambda: LocalGallery(tmp_path / "counted", meta))
    assert reader.value_counts() == gallery.value_counts()
    gallery.compact()
    assert LocalGallery(tmp_path / "counted", meta).value_counts() == gallery.value_counts()


def test_milvus_galleries_keep_per_value_counts_in_their_record(tmp_path):
    from gallery_fixtures import start_milvus

    from ccsclip.engine.galleries.milvus import MilvusConnection, MilvusGallery
    from ccsclip.service.proctree import stop_tree

    process, uri = start_milvus(tmp_path)
    try:
        conn = MilvusConnection(uri)
        meta = _counts_meta("counted", "milvus")
        conn.create(meta)
        gallery = MilvusGallery(conn, meta)
        _write_and_check(gallery, lambda: MilvusGallery(MilvusConnection(uri), meta))
        assert conn.record("counted")["value_counts"] == gallery.value_counts()
        # a record written before counts were kept is recounted once, then stored
        record = conn.record("counted")
        conn.put_record("counted", {k: v for k, v in record.items() if k != "value_counts"})
        assert gallery.value_counts() == _recount(gallery)
        assert "value_counts" in conn.record("counted")
        conn.reset()
    finally:
        stop_tree(process.pid)


def test_live_bias_on_a_milvus_gallery_over_grpc(world, tmp_path):
    """A Milvus gallery that declares an attribute: its searches over gRPC add the excess
    counters to the gRPC server's registry, from the counts kept in the gallery's record."""
    from gallery_fixtures import GalleryGrpc, gallery_env, start_grpc_only, start_milvus
    from service_fixtures import grpc_ready

    from ccsclip.service.proctree import stop_tree

    probe = load_probe(world.world / "bias-shape-colour")
    rows = list(probe.rows)[:16]
    colours = [attrs["colour"] for _, attrs in rows]
    shares = {v: n / len(rows) for v, n in Counter(colours).items()}
    milvus, uri = start_milvus(tmp_path)
    server = start_grpc_only(world, tmp_path, gallery_env(tmp_path / "store", uri))
    try:
        wait_ready(server, grpc_ready)
        client = GalleryGrpc(server)
        client.create("colours-m", backend="milvus", bias_attributes=["colour"])
        items = [(f"m{i}", path.read_bytes(), attrs) for i, (path, attrs) in enumerate(rows)]
        # m6 and m7 are written again with another colour (a replace moves their counts)
        recoloured = [(i, img, {**a, "colour": colours[0]}) for i, img, a in items[6:8]]
        for batch in (items[:8], recoloured + items[8:12], items[12:]):
            client.upsert("colours-m", batch)
        client.delete("colours-m", ["m0"])
        kept = {i: a["colour"] for i, _, a in items[1:]} | {
            i: a["colour"] for i, _, a in recoloured
        }
        live = list(kept.values())
        shares = {v: n / len(live) for v, n in Counter(live).items()}
        null = hand_null(list(Counter(live).values()), 4)
        excess = []
        for query in QUERIES[:3]:
            hits = client.search("colours-m", text=query, k=4)["hits"]
            values = [hit["metadata"]["colour"] for hit in hits]
            excess.append(max(hand_skews(values, shares).values()) - null)
        import httpx

        text = httpx.get(client.metrics_url, timeout=30).text
        labels = {"profile": DEFAULT, "gallery": "colours-m", "attribute": "colour"}
        got = figure_counters(text, "ccsclip_live_excess_maxskew", labels)
        assert got == pytest.approx(excess_sums(excess), abs=1e-6)
        client.channel.close()
    finally:
        server.stop()
        stop_tree(milvus.pid)
