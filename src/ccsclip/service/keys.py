"""API keys: which keys exist and the scope each grants (what access control checks against).

Keys come from CCSCLIP_API_KEYS_FILE (a mounted Secret) and/or CCSCLIP_API_KEYS, as `scope:key`
entries (one per line in the file, comma-separated in the variable; `#` starts a comment). A key
may be given as `sha256:<hex>` so the Secret holds no usable key at all. Only SHA-256 digests are
kept in memory; a presented key is hashed and compared with every digest in constant time
(`hmac.compare_digest`). A keys file that is set but holds no key is an error (fail closed).
Apart from auth.py (which call needs which scope) so that the settings can check the keys
without importing the endpoint table.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

_HEX64 = re.compile(r"[0-9a-f]{64}")


class Scope(enum.IntEnum):
    """What a call needs; a key's scope allows every call needing that scope or less."""

    OPEN = 0
    READ = 1
    WRITE = 2


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
