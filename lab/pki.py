"""Certificates and credentials for lab control planes.

A lab API server needs a serving certificate that every client verifies: one
throwaway CA per control plane signs it, with the loopback and cluster-network
addresses as SANs. Clients authenticate with a static bearer token (the
`--token-auth-file` mechanism), and a service-account key pair is generated
because 1.20 refuses to start without one.

The same CA signs what `kubectl exec`/`logs` need between the API server and
the kubelets, both ways verified: a client certificate for the API server
(system:masters, so kubelet's webhook authorization allows it) and a serving
certificate per kubelet with the node's address as SAN. Its key stays in the
control plane's folder (0600) for `issue_kubelet_serving`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class ControlPlanePKI:
    """Paths of everything a control plane and its clients need."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    token_file: Path
    token: str
    kubelet_client_cert: Path
    kubelet_client_key: Path


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_pki(directory: Path, *, ip_sans: list[str], dns_sans: list[str]) -> ControlPlanePKI:
    """Create a CA, a serving certificate, an SA key pair and an admin token in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("globalnet-lab-ca"))
        .issuer_name(_name("globalnet-lab-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    # The service-account signer must be RSA or ECDSA; RSA is what 1.20 documents.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = secrets.token_hex(24)

    pki = ControlPlanePKI(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
        token_file=directory / "tokens.csv",
        token=token,
        ca_key=directory / "ca.key",
        kubelet_client_cert=directory / "apiserver-kubelet-client.crt",
        kubelet_client_key=directory / "apiserver-kubelet-client.key",
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pki.ca_key, _pem_key(ca_key))
    _issue(ca_cert, ca_key, pki.serving_cert, pki.serving_key, common_name="kube-apiserver",
           ip_sans=ip_sans, dns_sans=dns_sans, server=True)
    _issue(ca_cert, ca_key, pki.kubelet_client_cert, pki.kubelet_client_key,
           common_name="kube-apiserver-kubelet-client", organizations=["system:masters"],
           server=False)
    _write_private(
        pki.sa_key,
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    # token,user,uid,"group1,group2": system:masters bypasses RBAC for lab clients.
    _write_private(pki.token_file, f'{token},admin,admin,"system:masters"\n'.encode())
    return pki


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _issue(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cert_path: Path,
    key_path: Path, *, common_name: str, organizations: list[str] | None = None,
    ip_sans: list[str] | None = None, dns_sans: list[str] | None = None, server: bool,
) -> None:
    """Sign a serving (`server`) or client certificate with the control plane's CA."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations or []]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.ExtendedKeyUsage(
            [x509.OID_SERVER_AUTH if server else x509.OID_CLIENT_AUTH]), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_sans or []]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_sans or []]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _pem_key(key))


def issue_kubelet_serving(pki: ControlPlanePKI, *, node_name: str, node_ip: str,
                          cert_path: Path, key_path: Path) -> None:
    """A kubelet's serving certificate: the API server dials the node's InternalIP."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    _issue(ca_cert, ca_key, cert_path, key_path, common_name=f"system:node:{node_name}",
           ip_sans=[node_ip], dns_sans=[node_name], server=True)


def load_pki(directory: Path) -> ControlPlanePKI:
    """The PKI `create_pki` wrote into `directory` (the token read back from its file)."""
    token = (directory / "tokens.csv").read_text().split(",", 1)[0]
    return ControlPlanePKI(
        ca_cert=directory / "ca.crt", ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt", serving_key=directory / "apiserver.key",
        sa_key=directory / "sa.key", sa_pub=directory / "sa.pub",
        token_file=directory / "tokens.csv", token=token,
        kubelet_client_cert=directory / "apiserver-kubelet-client.crt",
        kubelet_client_key=directory / "apiserver-kubelet-client.key",
    )


def write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, token: str, cluster_name: str
) -> Path:
    """Write a kubeconfig with the CA embedded by path and a bearer token."""
    import yaml

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": "admin"}}],
        "current-context": cluster_name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
