"""Mutual-TLS credentials for servers and channels, and the caller's role."""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from backend.common import certs


def server_credentials(certs_dir: Path, name: str) -> grpc.ServerCredentials:
    """Credentials of server `name`: every caller must show a certificate from our CA."""
    certs_dir = Path(certs_dir)
    if not (certs_dir / f"server-{name}.crt").exists():
        certs.ensure_server_cert(certs_dir, name)
    key = (certs_dir / f"server-{name}.key").read_bytes()
    chain = (certs_dir / f"server-{name}.crt").read_bytes()
    return grpc.ssl_server_credentials(
        [(key, chain)],
        root_certificates=(certs_dir / "ca.crt").read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(certs_dir: Path, role: str) -> grpc.ChannelCredentials:
    """Credentials to call our servers with the client certificate of `role`."""
    certs_dir = Path(certs_dir)
    return grpc.ssl_channel_credentials(
        root_certificates=(certs_dir / "ca.crt").read_bytes(),
        private_key=(certs_dir / f"role-{role}.key").read_bytes(),
        certificate_chain=(certs_dir / f"role-{role}.crt").read_bytes(),
    )


CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    # One channel per target: do not let two processes share one TCP connection.
    ("grpc.use_local_subchannel_pool", 1),
)


def secure_channel(target: str, certs_dir: Path, role: str, service_config: dict | None = None) -> grpc.aio.Channel:
    """An mTLS channel with our options; `service_config` (gRPC's JSON service config, as a
    dict) declares retry policies and the like."""
    options: list[tuple[str, object]] = list(CHANNEL_OPTIONS)
    if service_config is not None:
        options.append(("grpc.service_config", json.dumps(service_config)))
    return grpc.aio.secure_channel(target, channel_credentials(certs_dir, role), options=options)


def retry_policy(service: str, methods: list[str], attempts: int = 3) -> dict:
    """A service config retrying idempotent `methods` of `service` on UNAVAILABLE, with backoff
    (gRPC retries within the call's own deadline: no loop of ours)."""
    return {
        "methodConfig": [
            {
                "name": [{"service": service, "method": m} for m in methods],
                "retryPolicy": {
                    "maxAttempts": attempts,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }


def peer_role(context: grpc.ServicerContext) -> str | None:
    """The role named by the caller's certificate (its subject CN), or None."""
    names = context.auth_context().get("x509_common_name") or []
    if len(names) != 1:
        return None
    role = names[0].decode("utf-8", "replace")
    return role if role in certs.ROLES else None
