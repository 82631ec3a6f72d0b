"""The broker-info file: what a member needs to join, handed out by `gnctl deploy-broker`.

Like subctl's ``broker-info.subm`` it is base64-encoded JSON, so it survives being
pasted around; it carries the Broker's API URL and CA, the token of the Broker's
*join* identity (``names.BROKER_JOIN_ACCOUNT``: it may allocate global CIDRs, publish
Cluster objects and create per-member identities, nothing else; see deploy.broker),
and the clusterset's settings. A digest over the content catches a truncated or
hand-edited file before anything is sent with it; the token itself is only as safe
as the file, which is written with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

FORMAT_VERSION: Final = 1
DEFAULT_FILE: Final = "broker-info.subm"


class BrokerInfoError(ValueError):
    """A broker-info file that cannot be used; the message is one line."""


@dataclass(frozen=True, kw_only=True)
class BrokerInfo:
    """The content of a broker-info file."""

    server: str  # the Broker's API URL as members reach it
    ca_pem: str  # the Broker API server's CA certificate (PEM)
    token: str  # the join identity's ServiceAccount token
    namespace: str  # the shared Broker namespace
    globalnet: bool
    globalnet_cidr_range: str = ""
    globalnet_cluster_size: int = 0
    # The clusterset's IPsec pre-shared key (upstream's `psk`), kept on the Broker
    # so every deploy-broker hands out the same one; "" in files from before it.
    ipsec_psk: str = ""

    def encode(self) -> str:
        body = asdict(self)
        doc = {"version": FORMAT_VERSION, **body, "digest": _digest(body)}
        return base64.b64encode(json.dumps(doc, sort_keys=True).encode()).decode() + "\n"

    def write(self, path: Path) -> None:
        """Write the file readable by its owner only (it holds a credential)."""
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(self.encode())
        os.replace(tmp, path)

    def kubeconfig(self, *, token: str | None = None, user: str = "globalnet") -> str:
        """A kubeconfig for the Broker with this file's token (or ``token``), CA inline."""
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "broker", "cluster": {
                "server": self.server,
                "certificate-authority-data": base64.b64encode(
                    self.ca_pem.encode()).decode()}}],
            "users": [{"name": user, "user": {"token": token or self.token}}],
            "contexts": [{"name": "broker", "context": {
                "cluster": "broker", "user": user, "namespace": self.namespace}}],
            "current-context": "broker",
        }
        return json.dumps(config, indent=2) + "\n"


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


_FIELDS: Final = {"server": str, "ca_pem": str, "token": str, "namespace": str,
                  "globalnet": bool, "globalnet_cidr_range": str,
                  "globalnet_cluster_size": int}
_OPTIONAL: Final = {"ipsec_psk": str}  # absent in older files


def decode(text: str, *, source: str = "broker-info") -> BrokerInfo:
    """Parse and check a broker-info file's text."""
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
        doc = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BrokerInfoError(f"{source} is not a broker-info file (expected what "
                              "`gnctl deploy-broker` writes: base64-encoded JSON)") from None
    if not isinstance(doc, dict):
        raise BrokerInfoError(f"{source} is not a broker-info file (no JSON object inside)")
    if doc.get("version") != FORMAT_VERSION:
        raise BrokerInfoError(f"{source} has format version {doc.get('version')!r}; this "
                              f"gnctl reads version {FORMAT_VERSION}")
    digest = doc.pop("digest", None)
    doc.pop("version")
    for name, kind in _FIELDS.items():
        if not isinstance(doc.get(name), kind) or isinstance(doc.get(name), bool) != (
                kind is bool):
            raise BrokerInfoError(f"{source} lacks a valid {name!r} field")
    optional = {k: v for k, v in doc.items() if k in _OPTIONAL}
    for name, value in optional.items():
        if not isinstance(value, _OPTIONAL[name]):
            raise BrokerInfoError(f"{source} lacks a valid {name!r} field")
    if set(doc) - set(optional) != set(_FIELDS) or digest != _digest(doc):
        raise BrokerInfoError(f"{source} was altered or damaged (its digest does not match "
                              "its content); get a fresh copy from `gnctl deploy-broker`")
    if not doc["server"].startswith("https://"):
        raise BrokerInfoError(f"{source}: the Broker URL {doc['server']!r} is not https://")
    if "BEGIN CERTIFICATE" not in doc["ca_pem"]:
        raise BrokerInfoError(f"{source}: the Broker CA is not a PEM certificate")
    return BrokerInfo(**doc)


def read(path: Path) -> BrokerInfo:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise BrokerInfoError(f"broker-info file {path} not found (write it with "
                              "`gnctl deploy-broker --out FILE`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BrokerInfoError(f"broker-info file {path}: {exc}") from None
    return decode(text, source=f"broker-info file {path}")
