"""TLS certificates and SuperNode authentication keys for a deployment, made with `cryptography` alone."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedrec.shared import atomic
from fedrec.shared.errors import ConfigError, FedrecError

DEFAULT_HOSTS = ["127.0.0.1", "localhost"]
CA_DAYS = 3650
SERVER_DAYS = 825
# Flower 1.42 reads a SuperNode's key with `load_ssh_private_key` and accepts NIST curves only; its docs use P-384.
AUTH_CURVE = ec.SECP384R1


@dataclass(frozen=True)
class CertificatePaths:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_keys: list[Path]
    client_public_keys: list[Path]
    public_key_list: Path  # one OpenSSH public key per line: the SuperNodes the SuperLink admits


def client_key_pair(comment: str = "") -> tuple[bytes, bytes]:
    """An OpenSSH EC private key (for `--auth-supernode-private-key`) and its OpenSSH public key line."""
    key = ec.generate_private_key(AUTH_CURVE())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + (f" {comment}" if comment else "").encode() + b"\n"


def _san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or any(c.isspace() or c in "/:@" for c in host) or not host.isascii():
        raise ConfigError(f"--host {host!r}: expected an IP address or an ASCII DNS name")
    return x509.DNSName(host.lower())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificates(hosts: list[str]) -> dict[str, bytes]:
    names = [_san_entry(host) for host in dict.fromkeys(hosts or DEFAULT_HOSTS)]
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)  # tolerate clock skew
    ca_key, server_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedrec"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "fedrec deployment CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    server_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedrec"),
                             x509.NameAttribute(NameOID.COMMON_NAME, (hosts or DEFAULT_HOSTS)[0])])
    server_cert = (
        x509.CertificateBuilder().subject_name(server_name).issuer_name(ca_name)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    return {"ca.crt": ca_cert.public_bytes(pem), "ca.key": _pem_key(ca_key),
            "server.pem": server_cert.public_bytes(pem), "server.key": _pem_key(server_key)}


def make_certificates(out: Path, hosts: list[str], n_clients: int, force: bool = False) -> CertificatePaths:
    """Write a CA, a server certificate for `hosts` and `n_clients` SuperNode key pairs into `out`.

    Everything is generated and written into a scratch folder beside `out` first, so an error leaves `out`
    untouched; only then is each file renamed into place. Private keys are 0600 from the moment they exist.
    """
    out = Path(out)
    if n_clients < 0:
        raise ConfigError(f"--clients {n_clients}: expected 0 or more")
    if out.exists() and not out.is_dir():
        raise FedrecError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FedrecError(f"{out} is not empty: choose a new folder, or pass --force to overwrite its keys")
    files = _certificates(list(hosts))
    public_lines = []
    for k in range(n_clients):
        files[f"client-{k}.key"], files[f"client-{k}.pub"] = client_key_pair(f"fedrec-client-{k}")
        public_lines.append(files[f"client-{k}.pub"])
    files["client-public-keys.csv"] = b"".join(public_lines)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise FedrecError(f"cannot write {out}: {exc.strerror}") from None
    try:
        for name, data in files.items():
            atomic.write_bytes(scratch / name, data, mode=0o600 if name.endswith(".key") else 0o644)
        if out.is_dir():
            for name in files:
                os.replace(scratch / name, out / name)
        else:
            os.replace(scratch, out)  # mkdtemp made it 0700: the folder holds the CA's private key
    except OSError as exc:
        raise FedrecError(f"cannot write {out}: {exc.strerror}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return CertificatePaths(
        ca_cert=out / "ca.crt", ca_key=out / "ca.key", server_cert=out / "server.pem", server_key=out / "server.key",
        client_keys=[out / f"client-{k}.key" for k in range(n_clients)],
        client_public_keys=[out / f"client-{k}.pub" for k in range(n_clients)],
        public_key_list=out / "client-public-keys.csv",
    )
