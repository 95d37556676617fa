"""API keys: which calls need one, which keys exist, and whether a presented key may make a call.

One classification for both transports (`scope_for`, the contract with the gallery endpoints):
OPEN calls (health, readiness, gRPC health and reflection; `/metrics` unless
CCSCLIP_METRICS_REQUIRE_KEY) need no key, READ calls (the inference and listing endpoints) need any
key, and every other name needs a WRITE key: deny by default, so a state-changing route added later
is protected before anyone remembers to list it, and a route unknown to this build still answers
401/403 rather than 404.

Keys come from CCSCLIP_API_KEYS_FILE (a mounted Secret) and/or CCSCLIP_API_KEYS, as `scope:key`
entries (one per line in the file, comma-separated in the variable; `#` starts a comment). A key
may be given as `sha256:<hex>` so the Secret holds no usable key at all. Only SHA-256 digests are
kept in memory; a presented key is hashed and compared with every digest in constant time
(`hmac.compare_digest`). No key ever reaches a log line or an error body. No keys configured: access
control is off (the default, for `make demo`); a keys file that is set but holds no key is an error
(fail closed, never silently open).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

HTTP_OPEN = frozenset({"/readyz", "/livez", "/healthz"})
HTTP_READ = frozenset(
    {
        "/v1/zero_shot",
        "/v1/retrieve",
        "/v1/embed_images",
        "/v1/embed_texts",
        "/v1/profiles",
        "/v1/probes",
        "/v1/galleries/list",
        "/v1/galleries/info",
        "/v1/galleries/search",
    }
)
GRPC_OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
GRPC_SERVICE = "ccsclip.v1.CCSClip"
GRPC_READ = frozenset(
    {
        "ZeroShot",
        "Retrieve",
        "EmbedImages",
        "EmbedTexts",
        "ListProfiles",
        "GetProbeResults",
        "ListGalleries",
        "GalleryInfo",
        "SearchGallery",
    }
)
METRICS_PATH = "/metrics"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class Scope(enum.IntEnum):
    """What a call needs; a key's scope allows every call needing that scope or less."""

    OPEN = 0
    READ = 1
    WRITE = 2


def scope_for(name: str, *, metrics_require_key: bool = False) -> Scope:
    """The scope a call needs, by HTTP path (`/v1/zero_shot`), gRPC full method
    (`/ccsclip.v1.CCSClip/ZeroShot`) or bare gRPC method name (`ZeroShot`)."""
    if name in HTTP_OPEN:
        return Scope.OPEN
    if name == METRICS_PATH:
        return Scope.READ if metrics_require_key else Scope.OPEN
    if name in HTTP_READ:
        return Scope.READ
    service, _, method = name.lstrip("/").rpartition("/")
    if service in GRPC_OPEN_SERVICES:
        return Scope.OPEN
    if service in ("", GRPC_SERVICE) and method in GRPC_READ:
        return Scope.READ
    return Scope.WRITE


class KeyConfigError(ValueError):
    """A key entry that cannot be read; the message names the source and line, never the key."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _parse_entry(entry: str, where: str) -> tuple[bytes, Scope]:
    scope_name, sep, secret = entry.partition(":")
    scope_name, secret = scope_name.strip().lower(), secret.strip()
    if not sep or scope_name not in ("read", "write") or not secret:
        raise KeyConfigError(
            f"{where}: expected `read:<key>` or `write:<key>` (or `<scope>:sha256:<hex>`)"
        )
    if secret.startswith("sha256:"):
        hexdigest = secret.removeprefix("sha256:").strip().lower()
        if not _HEX64.fullmatch(hexdigest):
            raise KeyConfigError(f"{where}: `sha256:` must be followed by 64 hex digits")
        return bytes.fromhex(hexdigest), Scope[scope_name.upper()]
    if len(secret) < 16:
        raise KeyConfigError(f"{where}: a key needs at least 16 characters")
    return _digest(secret), Scope[scope_name.upper()]


@dataclass(frozen=True)
class KeyRing:
    """SHA-256 digests of the accepted keys with their scopes. Empty: access control is off."""

    entries: tuple[tuple[bytes, Scope], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    @classmethod
    def load(cls, file: Path | None = None, env_value: str | None = None) -> KeyRing:
        entries: list[tuple[bytes, Scope]] = []
        if file is not None:
            try:
                lines = Path(file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise KeyConfigError(
                    f"CCSCLIP_API_KEYS_FILE={file}: cannot be read ({exc.strerror})"
                ) from None
            for number, line in enumerate(lines, 1):
                line = line.split("#", 1)[0].strip()
                if line:
                    entries.append(_parse_entry(line, f"{file} line {number}"))
            if not entries:
                raise KeyConfigError(
                    f"CCSCLIP_API_KEYS_FILE={file} holds no key; unset it to turn access control "
                    "off"
                )
        for number, entry in enumerate((env_value or "").split(","), 1):
            if entry.strip():
                entries.append(_parse_entry(entry, f"CCSCLIP_API_KEYS entry {number}"))
        return cls(tuple(entries))

    def scope_of(self, key: str) -> Scope | None:
        """The widest scope of a matching key, or None. Compares with every digest (no early
        exit), in constant time each."""
        candidate = _digest(key)
        found: Scope | None = None
        for digest, scope in self.entries:
            if hmac.compare_digest(candidate, digest) and (found is None or scope > found):
                found = scope
        return found


class Denied(Exception):
    """A refused call: `status` is 401 (no or unknown key) or 403 (key lacks the scope)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (scheme case-insensitive)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def authorize(ring: KeyRing, needed: Scope, authorization: str | None) -> None:
    """Raise Denied unless the call may proceed. The messages never include the key."""
    if not ring.enabled or needed is Scope.OPEN:
        return
    token = bearer_token(authorization)
    if token is None:
        raise Denied(401, "an API key is required: send `authorization: Bearer <key>`")
    scope = ring.scope_of(token)
    if scope is None:
        raise Denied(401, "the API key is not valid")
    if scope < needed:
        raise Denied(403, "this API key is read-only; the call changes state and needs a write key")
