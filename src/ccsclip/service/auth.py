"""API keys: which calls need one, which keys exist, and whether a presented key may make a call.

One classification for both transports (`scope_for`): OPEN calls (health, readiness, gRPC health
and reflection; `/metrics` unless CCSCLIP_METRICS_REQUIRE_KEY) need no key, READ calls (the
endpoints the table in endpoints.py marks `read`) need any key, and every other name needs a
WRITE key: deny by default, so a state-changing route added later
is protected before anyone remembers to list it, and a route unknown to this build still answers
401/403 rather than 404.

The keys themselves (files, digests, constant-time comparison) are keys.py. No key ever reaches
a log line or an error body. No keys configured: access control is off (the default, for
`make demo`).
"""

from __future__ import annotations

from ccsclip.service.endpoints import ENDPOINTS
from ccsclip.service.keys import KeyRing, Scope

HTTP_OPEN = frozenset({"/readyz", "/livez", "/healthz"})
HTTP_READ = frozenset(e.route for e in ENDPOINTS if e.scope == "read")
GRPC_OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
GRPC_SERVICE = "ccsclip.v1.CCSClip"
GRPC_READ = frozenset(e.rpc for e in ENDPOINTS if e.scope == "read")
METRICS_PATH = "/metrics"


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
