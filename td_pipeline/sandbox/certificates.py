"""A throw-away certificate authority for the secure local fleet (`sandbox up --secure`): a CA,
a server certificate for 127.0.0.1 / localhost, and client certificates, as PEM files.

Made with the `cryptography` package (a dependency of td-pipeline itself). Keys are EC P-256:
quick to make, and every TLS stack here (OpenSSL for nats-py, BoringSSL for gRPC, Go for
nats-server) takes them. The keys are written readable by their owner only."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 7  # long enough for a sandbox session, short enough to be thrown away
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    cert: Path
    key: Path


class _Authority:
    def __init__(self, common_name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        self.cert = (
            _builder(self.name, self.name, self.key.public_key(), now, now + _days(VALID_DAYS))
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
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        *,
        server: bool,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or _now()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            _builder(
                subject, self.name, key.public_key(), start, not_after or start + _days(VALID_DAYS)
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address(LOOPBACK_NAMES[0])),
                        x509.DNSName(LOOPBACK_NAMES[1]),
                    ]
                ),
                critical=False,
            )
        return builder.sign(self.key, hashes.SHA256()), key


def _now() -> datetime.datetime:
    # A minute back: a clock a little behind the issuer's still accepts the certificate.
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)


def _days(days: int) -> datetime.timedelta:
    return datetime.timedelta(days=days)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    return path


def _write_pair(
    directory: Path, name: str, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> CertificateFiles:
    cert, key = pair
    return CertificateFiles(
        cert=_write_cert(directory / f"{name}.crt", cert),
        key=_write_key(directory / f"{name}-key.pem", key),
    )


class CertificateAuthority:
    """A CA kept in memory, its certificate written to `directory/ca.crt`; it issues more
    certificates into the same folder (tests make an expired client or a stranger CA)."""

    def __init__(self, directory: Path, common_name: str = "td-pipeline sandbox CA") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._authority = _Authority(common_name)
        self.ca = _write_cert(directory / "ca.crt", self._authority.cert)

    def server(self, name: str = "server") -> CertificateFiles:
        return _write_pair(self.directory, name, self._authority.issue(name, server=True))

    def client(self, name: str = "client", *, expired: bool = False) -> CertificateFiles:
        if not expired:
            return _write_pair(self.directory, name, self._authority.issue(name, server=False))
        ended = _now() - _days(1)
        pair = self._authority.issue(
            name, server=False, not_before=ended - _days(VALID_DAYS), not_after=ended
        )
        return _write_pair(self.directory, name, pair)
