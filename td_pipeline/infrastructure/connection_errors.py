"""One line, not a traceback, for a connection that failed because of how it was set up: a
wrong CA, a missing or expired client certificate, a server that does not speak TLS, refused
credentials. Each line names the peer, where it is, what went wrong and the settings to look
at. Nothing here ever shows a secret (a URL's user info is dropped)."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509

from td_pipeline.infrastructure.nats_auth import NatsAuth

NATS_TLS_FILES = "NATS_TLS_CERT, NATS_TLS_KEY"
GRPC_TLS_FILES = "TD_GRPC_TLS_CERT, TD_GRPC_TLS_KEY"


def redacted_url(url: str) -> str:
    """The URL without user info (`nats://user:password@host` names no secret in a log)."""
    parts = urlsplit(url)
    if parts.hostname is None or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host))


def _login_variables(auth: NatsAuth) -> str:
    if auth.user:
        return "NATS_USER, NATS_PASSWORD"
    if auth.token:
        return "NATS_TOKEN"
    if auth.credentials_path:
        return "NATS_CREDS"
    if auth.nkey_seed_path:
        return "NATS_NKEY_SEED"
    return "no credentials set: NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_CREDS or NATS_NKEY_SEED"


def tls_reason(text: str, ca_variable: str, client_files: str, client_cert: bool) -> str | None:
    """What a TLS failure's message says, in words, with the settings to check; None when
    the message is not about TLS. Works on OpenSSL's (nats-py) and BoringSSL's (gRPC) text."""
    upper = text.upper()
    if "CERTIFICATE_VERIFY_FAILED" in upper:
        detail = "certificate has expired" if "EXPIRED" in upper else "certificate verify failed"
        return f"TLS handshake failed: {detail}: the server is not trusted ({ca_variable})"
    if "CERTIFICATE_REQUIRED" in upper or "PEER_DID_NOT_RETURN_A_CERTIFICATE" in upper:
        return f"TLS handshake failed: the server requires a client certificate ({client_files})"
    if "CERTIFICATE_EXPIRED" in upper:
        return f"TLS handshake failed: our client certificate has expired ({client_files})"
    if "ALERT_UNKNOWN_CA" in upper or "ALERT_BAD_CERTIFICATE" in upper:
        return (
            "TLS handshake failed: the server refused our client certificate: not from a CA "
            f"it trusts ({client_files})"
        )
    if "WRONG_VERSION_NUMBER" in upper or "RECORD_LAYER_FAILURE" in upper:
        return (
            "TLS handshake failed: the server does not speak TLS (plaintext refused; "
            f"check the address and {ca_variable})"
        )
    if "SOCKET CLOSED" in upper:  # gRPC: the server hung up during our handshake
        whose = "refused our client certificate (expired, or not from a CA it trusts)"
        if not client_cert:
            whose = "closed the connection: it may require a client certificate"
        return f"TLS handshake failed: the server {whose} ({client_files})"
    if "HANDSHAKE" in upper or "SSL" in upper:
        return f"TLS handshake failed: {text.strip().splitlines()[0]}"
    return None


def _refused_login(error: BaseException) -> bool:
    return "authorization violation" in str(error).lower()


def nats_failure(
    url: str, error: BaseException, auth: NatsAuth, seen: Sequence[BaseException] = ()
) -> str:
    """Why connecting to NATS failed, in one line. `seen`: the errors nats-py reported while
    it tried (its last word, "no servers available" or a timeout, hides the reason)."""
    if seen and (isinstance(error, TimeoutError) or "no servers available" in str(error)):
        telling = [e for e in seen if isinstance(e, ssl.SSLError) or _refused_login(e)]
        error = (telling or list(seen))[-1]  # a refusal says more than the broken pipe after it
    where = f"NATS at {redacted_url(url)}"
    text = str(error) or type(error).__name__
    if isinstance(error, ssl.SSLError):
        reason = tls_reason(text, "NATS_TLS_CA", NATS_TLS_FILES, bool(auth.tls_cert_path))
        return f"{where}: {reason or text}"
    if _refused_login(error):
        return f"{where}: authorization violation: login refused ({_login_variables(auth)})"
    if "expecting INFO" in text and not auth.tls_ca_path:
        return f"{where}: the server said nothing: it may require TLS first (NATS_TLS_CA)"
    if isinstance(error, ConnectionRefusedError):
        return f"{where}: connection refused"
    if isinstance(error, TimeoutError) or type(error).__name__ == "TimeoutError":
        return f"{where}: no answer in time"
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"{where}: {first_line}"


def certificate_expired(path: str, now: datetime | None = None) -> bool:
    """Whether the PEM certificate at `path` is past its end date (False when unreadable:
    then the handshake's own message is the better one)."""
    try:
        certificate = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return False
    return certificate.not_valid_after_utc < (now or datetime.now(UTC))


def grpc_tls_failure(
    peer: str, address: str, details: str, tls: bool, client_cert_path: str | None
) -> str | None:
    """One line naming the peer when a gRPC call failed in the TLS handshake, else None."""
    if not tls:  # a plaintext channel's "Socket closed" may as well be a restart: transient
        return None
    reason = tls_reason(details, "TD_GRPC_TLS_CA", GRPC_TLS_FILES, client_cert_path is not None)
    if reason is None:
        return None
    # gRPC only says the server hung up; our own certificate's date tells one cause apart.
    hung_up = "SOCKET CLOSED" in details.upper()
    if hung_up and client_cert_path is not None and certificate_expired(client_cert_path):
        reason = f"TLS handshake failed: our client certificate has expired ({GRPC_TLS_FILES})"
    return f"{peer} at {address}: {reason}"
