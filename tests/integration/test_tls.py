"""TLS: ``tls://`` addresses, dask's ``Security`` object, mutual TLS with
host names checked, certificates made at test time; the token still applies
inside.  A cluster of real processes, and servers started here for the
certificates that must not work."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoal import AuthenticationError, Client, LocalCluster, Security
from shoal.comm.certificates import make_ca, make_certificate
from shoal.deploy.scheduler import Scheduler
from shoal.deploy.worker import Worker

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, threads_per_worker=1, security=True) as c:
        yield c


def _for(ca: Any, hosts: list[str], **kwargs: Any) -> Security:
    """A Security of ``ca``, with one certificate for ``hosts`` in every role."""
    cert, key = make_certificate(ca, hosts)
    roles = {f"tls_{r}_{p}": v for r in ("client", "scheduler", "worker")
             for p, v in (("cert", cert), ("key", key))}
    return Security(tls_ca_file=ca.cert, **roles, **kwargs)


def test_a_tls_cluster_of_processes_computes_and_moves_data(tls_cluster: LocalCluster) -> None:
    assert tls_cluster.scheduler_address.startswith("tls://")
    assert tls_cluster.security.require_encryption and tls_cluster.security.token
    with Client(tls_cluster, timeout=30) as c:
        workers = sorted(c.scheduler_info()["workers"])
        assert len(workers) == 2 and all(w.startswith("tls://") for w in workers)
        big = c.submit(np.arange, 2_000_000, workers=[workers[0]], pure=False)
        total = c.submit(np.sum, big, workers=[workers[1]], pure=False)  # worker to worker
        assert total.result(timeout=30) == np.arange(2_000_000).sum()
        assert (c.gather(big) == np.arange(2_000_000)).all()
        [x] = c.scatter([np.ones(500_000)])
        assert c.submit(np.sum, x).result(timeout=30) == 500_000
        assert c.gather(c.map(lambda i: i * 2, range(200))) == [i * 2 for i in range(200)]


def test_the_token_still_applies_inside_tls(tls_cluster: LocalCluster) -> None:
    sec = tls_cluster.security.replace(token="not-this-clusters-token-0000")
    with pytest.raises(AuthenticationError, match="wrong or missing token"):
        Client(tls_cluster.scheduler_address, security=sec, timeout=30)


def test_a_plain_tcp_client_is_told_tls_is_required(tls_cluster: LocalCluster) -> None:
    plain = tls_cluster.scheduler_address.replace("tls://", "tcp://")
    with pytest.raises(ConnectionRefusedError, match="requires TLS"):
        Client(plain, security=Security(token=tls_cluster.security.token), timeout=30)


def test_a_certificate_from_another_authority_is_refused(tls_cluster: LocalCluster) -> None:
    stranger = _for(make_ca("another CA"), ["127.0.0.1", "localhost"],
                    token=tls_cluster.security.token)
    with pytest.raises(ConnectionRefusedError, match="certificate"):
        Client(tls_cluster.scheduler_address, security=stranger, timeout=30)


def test_a_client_without_a_certificate_is_refused(tls_cluster: LocalCluster) -> None:
    """Mutual TLS: the server asks for the client's certificate."""
    sec = Security(tls_ca_file=tls_cluster.security.tls_ca_file,
                   tls_scheduler_cert=tls_cluster.security.tls_scheduler_cert,
                   tls_scheduler_key=tls_cluster.security.tls_scheduler_key,
                   token=tls_cluster.security.token)
    with pytest.raises(ValueError, match="no TLS certificates were given for the client role"):
        Client(tls_cluster.scheduler_address, security=sec, timeout=30)
    ca = make_ca()
    cert, key = make_certificate(ca, ["127.0.0.1"])

    async def main() -> None:
        server_only = Security(tls_ca_file=ca.cert, tls_scheduler_cert=cert, tls_scheduler_key=key,
                               tls_client_cert=cert, tls_client_key=key)
        async with Scheduler(protocol="tls", security=server_only) as s:
            import ssl

            from shoal.comm.core import connect

            bare = ssl.create_default_context(cadata=ca.cert)  # trusts the CA, shows nothing
            sock_sec = server_only.replace()
            sock_sec._contexts[("client", False)] = bare
            with pytest.raises(OSError, match=r"(?i)certificate"):
                await connect(s.address, timeout=10, security=sock_sec)

    asyncio.run(main())


def test_the_server_host_name_is_checked(tmp_path: Path) -> None:
    """A scheduler whose certificate names another host is refused, unless
    checking is turned off (``tls_check_hostname=False``, dask's behaviour)."""
    ca = make_ca()

    async def main() -> None:
        wrong = _for(ca, ["scheduler.example.org"])
        async with Scheduler(protocol="tls", security=wrong) as s:
            assert s.address.startswith("tls://127.0.0.1:")
            with pytest.raises(ConnectionRefusedError, match=r"(?i)address mismatch, certificate is not valid"):
                await Client(s.address, security=wrong, asynchronous=True, timeout=10)
            lax = wrong.replace(tls_check_hostname=False)
            async with Client(s.address, security=lax, asynchronous=True, timeout=10) as c:
                assert (await c.scheduler_info())["address"] == s.address
            # scheduler_sni: a worker names the host the certificate is for
            async with Worker(s.address, security=wrong, scheduler_sni="scheduler.example.org",
                              nthreads=1) as w:
                assert w.address.startswith("tls://")

    asyncio.run(main())


def test_a_tls_client_against_a_plain_server_is_refused_clearly() -> None:
    async def main() -> None:
        async with Scheduler(port=0) as s:
            sec = _for(make_ca(), ["127.0.0.1"])
            tls_address = s.address.replace("tcp://", "tls://")
            with pytest.raises(ConnectionRefusedError, match="TLS handshake"):
                await Client(tls_address, security=sec, asynchronous=True, timeout=10)

    asyncio.run(main())


def test_require_encryption_refuses_plain_addresses() -> None:
    sec = _for(make_ca(), ["127.0.0.1"])
    assert sec.require_encryption  # TLS files given: as dask
    with pytest.raises(RuntimeError, match="encryption is required"):
        Client("tcp://127.0.0.1:1", security=sec, timeout=5)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="encryption is required"):
            await Scheduler(protocol="tcp", security=sec).start()

    asyncio.run(main())


def test_temporary_certificates_name_this_machine() -> None:
    from cryptography import x509

    sec = Security.temporary()
    assert sec.require_encryption and sec.token is None
    cert = x509.load_pem_x509_certificate(sec.tls_scheduler_cert.encode())  # type: ignore[union-attr]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    assert "Temporary (In-memory)" in repr(sec) and "BEGIN" not in repr(sec)
