"""Certificates made on the fly, for ``Security.temporary()`` and for tests:
a certificate authority and certificates it signs, as PEM text, with the
``cryptography`` package (imported when called: it is needed for nothing
else).  Keys are ECDSA P-256: a millisecond to make, where an RSA key takes
tens of them.

A certificate names the hosts it is valid for (subject alternative names:
DNS names and IP addresses), because shoal checks that the server a process
connects to is the host it meant to reach.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's certificate and key (PEM text)."""

    cert: str
    key: str


def _crypto() -> Any:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise ImportError("making certificates (Security.temporary()) needs the 'cryptography' "
                          "package: pip install cryptography") from None
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    return x509, hashes, serialization, ec, NameOID, ExtendedKeyUsageOID


def _key_pem(key: Any, serialization: Any) -> str:
    return str(key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode())


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def make_ca(name: str = "shoal temporary CA", days: int = 365) -> CertificateAuthority:
    """A new self-signed certificate authority."""
    x509, hashes, serialization, ec, NameOID, _ = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start, end = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM).decode(),
                                _key_pem(key, serialization))


def make_certificate(ca: CertificateAuthority, hosts: list[str], name: str = "shoal",
                     days: int = 365) -> tuple[str, str]:
    """(certificate, key) as PEM text: signed by ``ca``, valid for ``hosts``
    (names or IP addresses) as a server and as a client."""
    x509, hashes, serialization, ec, NameOID, ExtendedKeyUsageOID = _crypto()
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[Any] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    start, end = _validity(days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key, serialization)


def this_machine_hosts() -> list[str]:
    """The names and addresses other processes may use to reach this
    machine: localhost, its host name, the loopback addresses and the
    addresses of its network interfaces."""
    import socket

    hosts = ["localhost", "127.0.0.1", "::1"]
    try:
        hosts.append(socket.gethostname())
    except OSError:
        pass
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family in (socket.AF_INET, socket.AF_INET6):
                    hosts.append(a.address.split("%", 1)[0])
    except Exception:
        pass
    return hosts
