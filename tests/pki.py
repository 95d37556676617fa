"""Test certificates made on the fly (the `cryptography` package): a CA, a server certificate for
localhost / 127.0.0.1, a client certificate from the same CA and one from a CA nobody trusts."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate that signed `server` and `client`
    server: Pair
    client: Pair
    stranger: Pair  # a client certificate from another CA


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
    pair = Pair(folder / f"{stem}.crt", folder / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pair


def _certificate(subject, issuer, public_key, signer, *, ca: bool, usage=None, names=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _ca(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    return _certificate(_name(common), _name(common), key.public_key(), key, ca=True), key


def _leaf(ca_cert, ca_key, common: str, usage, names=None):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(
        _name(common), ca_cert.subject, key.public_key(), ca_key, ca=False, usage=usage, names=names
    )
    return cert, key


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _ca("ccsclip test CA")
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _leaf(ca_cert, ca_key, "localhost", ExtendedKeyUsageOID.SERVER_AUTH, names)
    client = _leaf(ca_cert, ca_key, "test client", ExtendedKeyUsageOID.CLIENT_AUTH)
    other_cert, other_key = _ca("some other CA")
    stranger = _leaf(other_cert, other_key, "stranger", ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_path = folder / "ca.crt"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Pki(
        ca=ca_path,
        server=_write(folder, "server", *server),
        client=_write(folder, "client", *client),
        stranger=_write(folder, "stranger", *stranger),
    )
