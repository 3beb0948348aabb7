"""Make the certificate authority and the certificates every process needs.

Layout of a certificate directory:
  ca.crt, ca.key                   the CA (ca.key only where certificates are minted)
  server-<name>.crt/.key           one per server process (gateway, each bank); SAN 127.0.0.1, localhost
  role-<role>.crt/.key             client certificates; the subject CN names the role
Private keys are written with mode 0600 and never belong in git.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES = ("gateway", "operator", "client", "bank")
VALIDITY_DAYS = 825
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Strife"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _load_ca(certs_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((certs_dir / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((certs_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _ensure_ca(certs_dir: Path) -> None:
    if (certs_dir / "ca.crt").exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Strife CA"))
        .issuer_name(_name("Strife CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(certs_dir / "ca.key", key)
    _write_cert(certs_dir / "ca.crt", cert)


def _issue(certs_dir: Path, stem: str, common_name: str, server: bool) -> None:
    if (certs_dir / f"{stem}.crt").exists() and (certs_dir / f"{stem}.key").exists():
        return
    ca_cert, ca_key = _load_ca(certs_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    _write_key(certs_dir / f"{stem}.key", key)
    _write_cert(certs_dir / f"{stem}.crt", builder.sign(ca_key, hashes.SHA256()))


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"bad process name {name!r}: use 1-32 letters, digits, '_', '.', '-'")
    return name


def ensure_server_cert(certs_dir: Path, name: str) -> None:
    """Mint server-<name> if it is missing (needs ca.key)."""
    _issue(Path(certs_dir), f"server-{check_name(name)}", name, server=True)


def ensure_certs(certs_dir: Path, servers: Sequence[str] = ()) -> Path:
    """Create the CA, every role certificate and the named server certificates if missing."""
    certs_dir = Path(certs_dir)
    certs_dir.mkdir(parents=True, exist_ok=True)
    _ensure_ca(certs_dir)
    for role in ROLES:
        _issue(certs_dir, f"role-{role}", role, server=False)
    for name in servers:
        ensure_server_cert(certs_dir, name)
    return certs_dir
