"""The access-control policy without servers: call classification, key files, scopes, settings."""

from __future__ import annotations

import hashlib

import pytest

from ccsclip.service.auth import Denied, authorize, bearer_token, scope_for
from ccsclip.service.keys import KeyConfigError, KeyRing, Scope
from ccsclip.service.limits import ConcurrencyLimit
from ccsclip.service.settings import ServiceSettings

KEY = "k" * 20
WRITE = "w" * 24

READ_CALLS = [
    "/v1/zero_shot",
    "/v1/retrieve",
    "/v1/embed_images",
    "/v1/embed_texts",
    "/v1/profiles",
    "/v1/probes",
    "/v1/galleries/list",
    "/v1/galleries/info",
    "/v1/galleries/search",
    "/ccsclip.v1.CCSClip/ZeroShot",
    "/ccsclip.v1.CCSClip/SearchGallery",
    "ListProfiles",
    "GetProbeResults",
]
WRITE_CALLS = [
    "/v1/galleries/create",
    "/v1/galleries/upsert",
    "/v1/galleries/delete",
    "/v1/galleries/drop",
    "/ccsclip.v1.CCSClip/CreateGallery",
    "/ccsclip.v1.CCSClip/UpsertItems",
    "/ccsclip.v1.CCSClip/DeleteItems",
    "/ccsclip.v1.CCSClip/DropGallery",
    "/v1/something_new",  # deny by default
    "/v1/zero_shot/",  # not the read route
    "/",
    "/other.Service/ZeroShot",  # a read method name under another service
]
OPEN_CALLS = [
    "/readyz",
    "/livez",
    "/healthz",
    "/grpc.health.v1.Health/Check",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]


@pytest.mark.parametrize("name", READ_CALLS)
def test_read_calls(name):
    assert scope_for(name) is Scope.READ


@pytest.mark.parametrize("name", WRITE_CALLS)
def test_everything_else_needs_a_write_key(name):
    assert scope_for(name) is Scope.WRITE


@pytest.mark.parametrize("name", OPEN_CALLS)
def test_open_calls(name):
    assert scope_for(name) is Scope.OPEN


def test_metrics_key_is_a_setting():
    assert scope_for("/metrics") is Scope.OPEN
    assert scope_for("/metrics", metrics_require_key=True) is Scope.READ


def test_keys_from_file_and_environment(tmp_path):
    keys = tmp_path / "keys"
    digest = hashlib.sha256(WRITE.encode()).hexdigest()
    keys.write_text(f"# comment\n\nread:{KEY}  # trailing comment\nwrite:sha256:{digest}\n")
    ring = KeyRing.load(keys, f"write:{'e' * 16}")
    assert ring.enabled
    assert ring.scope_of(KEY) is Scope.READ
    assert ring.scope_of(WRITE) is Scope.WRITE
    assert ring.scope_of("e" * 16) is Scope.WRITE
    assert ring.scope_of(KEY + "x") is None
    assert all(KEY.encode() not in digest for digest, _ in ring.entries)  # digests only
    assert KEY not in repr(ring)


def test_no_keys_means_off_but_an_empty_file_is_an_error(tmp_path):
    assert not KeyRing.load(None, None).enabled
    authorize(KeyRing.load(None, ""), Scope.WRITE, None)  # off: everything passes
    empty = tmp_path / "keys"
    empty.write_text("# nothing\n")
    with pytest.raises(KeyConfigError, match="holds no key"):
        KeyRing.load(empty)
    with pytest.raises(KeyConfigError, match="cannot be read"):
        KeyRing.load(tmp_path / "missing")


@pytest.mark.parametrize(
    "entry, message",
    [
        (f"admin:{KEY}", "expected `read:<key>`"),
        (KEY, "expected"),
        ("read:short", "at least 16"),
        ("write:sha256:abc", "64 hex digits"),
    ],
)
def test_bad_entries_are_named_without_the_key(entry, message):
    with pytest.raises(KeyConfigError, match=message) as caught:
        KeyRing.load(None, entry)
    assert "CCSCLIP_API_KEYS entry 1" in str(caught.value)
    assert KEY not in str(caught.value)


def test_authorize_statuses():
    ring = KeyRing.load(None, f"read:{KEY},write:{WRITE}")
    authorize(ring, Scope.OPEN, None)
    authorize(ring, Scope.READ, f"Bearer {KEY}")
    authorize(ring, Scope.WRITE, f"bearer {WRITE}")
    for header, needed, status in [
        (None, Scope.READ, 401),
        ("Basic abc", Scope.READ, 401),
        (f"Bearer {KEY}x", Scope.READ, 401),
        (f"Bearer {KEY}", Scope.WRITE, 403),
    ]:
        with pytest.raises(Denied) as caught:
            authorize(ring, needed, header)
        assert caught.value.status == status
        assert KEY not in caught.value.message
    assert bearer_token("Bearer  abc ") == "abc" and bearer_token("Bearer") is None


def test_settings_hide_keys_and_check_tls_and_limits(tmp_path):
    settings = ServiceSettings(api_keys=f"read:{KEY}")
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    with pytest.raises(ValueError, match="CCSCLIP_TLS_CERT_FILE and CCSCLIP_TLS_KEY_FILE"):
        ServiceSettings(tls_cert_file=tmp_path / "a.crt")
    with pytest.raises(ValueError, match="no such file"):
        ServiceSettings(tls_cert_file=tmp_path / "a.crt", tls_key_file=tmp_path / "a.key")
    empty = tmp_path / "keys"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="holds no key"):
        ServiceSettings(api_keys_file=empty)
    with pytest.raises(ValueError, match="CCSCLIP_API_KEYS entry 1") as caught:
        ServiceSettings(api_keys=f"admin:{KEY}")
    assert KEY not in str(caught.value)
    with pytest.raises(ValueError, match="must be below CCSCLIP_GRPC_WORKERS"):
        ServiceSettings(grpc_workers=4, grpc_max_concurrency=4)


def test_concurrency_limit():
    limit = ConcurrencyLimit(2)
    assert limit.try_acquire() and limit.try_acquire()
    assert not limit.try_acquire()
    limit.release()
    assert limit.try_acquire()
    unlimited = ConcurrencyLimit(0)
    assert all(unlimited.try_acquire() for _ in range(1000))
