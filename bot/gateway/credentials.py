"""The per-run gateway credential: names its run, proves it, and is useless for any other."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

PREFIX = "agw"
_SHAPE = re.compile(rf"{PREFIX}_([1-9][0-9]{{0,17}})_([A-Za-z0-9_-]{{43}})")


def gateway_key(private_key_pem: str) -> bytes:
    """The key credentials derive from; the bot and every gateway replica holding the App key
    agree on it, so the gateway needs no table of issued credentials."""
    return hashlib.sha256(b"agentbot gateway key\0" + private_key_pem.encode()).digest()


def _mac(key: bytes, run_id: int) -> str:
    digest = hmac.new(key, f"gateway:{run_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(key: bytes, run_id: int) -> str:
    """The credential of one run. It stops working when the run ends, because the gateway
    serves only runs that are active in the database, not because it expires."""
    return f"{PREFIX}_{run_id}_{_mac(key, run_id)}"


def run_of(key: bytes, credential: str) -> int | None:
    """The run a credential was issued for, or None when it is malformed or forged."""
    match = _SHAPE.fullmatch(credential)
    if match is None:
        return None
    run_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2).encode(), _mac(key, run_id).encode()):
        return None
    return run_id
