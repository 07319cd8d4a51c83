"""``shoal.security``: where the token comes from, token files, the rule for
servers beyond loopback, the Security object and its trip to child processes."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from shoal import Security, config
from shoal.security import (
    ENV_VAR,
    generate_token,
    is_loopback,
    read_token_file,
    security_env,
    security_from_env,
    token_for_server,
    verify_token,
    write_token_file,
)

TOKEN = "a-token-long-enough-to-be-real-0123"


def test_the_token_comes_from_the_argument_then_the_settings(tmp_path: Path) -> None:
    path = write_token_file(str(tmp_path / "t"), TOKEN + "-file")
    with config.set({"security.token": TOKEN + "-config", "security.token-file": path}):
        assert Security(token=TOKEN).token == TOKEN
        assert Security(token_file=path).token == TOKEN + "-file"
        assert Security().token == TOKEN + "-config"
        assert Security(token=False).token is None and Security(token="").token is None
    with config.set({"security.token": None, "security.token-file": path}):
        assert Security().token == TOKEN + "-file"
    with config.set({"security.token": None, "security.token-file": None}):
        assert Security().token is None


def test_short_environment_variables_name_the_token(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write_token_file(str(tmp_path / "t"), TOKEN)
    code = "from shoal import Security; print(Security().token)"
    for env in ({"SHOAL_TOKEN": TOKEN}, {"SHOAL_TOKEN_FILE": path}):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        out = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                             capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout.strip() == TOKEN


def test_a_token_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o640)
    with pytest.raises(ValueError, match="chmod 600"):
        read_token_file(str(path))
    path.chmod(0o600)
    assert read_token_file(str(path)) == TOKEN
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_token_file(str(link))  # a symbolic link could point anywhere
    with pytest.raises(ValueError, match="does not exist"):
        read_token_file(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ValueError, match="empty"):
        read_token_file(str(empty))


def test_written_token_files_are_0600(tmp_path: Path) -> None:
    path = write_token_file(str(tmp_path / "new" / "dir" / "token"), TOKEN)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    assert read_token_file(path) == TOKEN
    write_token_file(path, TOKEN + "2")  # replaced atomically, still private
    assert read_token_file(path) == TOKEN + "2" and os.stat(path).st_mode & 0o777 == 0o600


def test_generated_tokens_are_long_and_fresh() -> None:
    a, b = generate_token(), generate_token()
    assert a != b and len(a) >= 40


def test_verify_token_is_exact() -> None:
    assert verify_token(TOKEN, TOKEN) and verify_token(f" {TOKEN}\n", TOKEN)
    assert not verify_token(TOKEN[:-1], TOKEN) and not verify_token(None, TOKEN)
    assert not verify_token(TOKEN, None) and not verify_token(b"x", TOKEN)
    assert Security(token=TOKEN).verify_token(TOKEN)
    assert not Security(token=TOKEN).verify_token("guess")
    assert Security(token=False).verify_token("anything")  # no token: nothing to check


@pytest.mark.parametrize(("address", "loopback"), [
    ("tcp://127.0.0.1:0", True), ("tcp://127.3.4.5:1", True), ("tcp://localhost:1", True),
    ("tcp://[::1]:1", True), ("inproc://x", True), ("tcp://0.0.0.0:8786", False),
    ("tcp://[::]:1", False), ("tls://10.0.0.1:1", False), ("tcp://myhost:1", False),
])
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_servers_beyond_loopback_need_a_token() -> None:
    none = Security(token=False)
    with config.set({"security.require-token": "auto"}):
        assert token_for_server(none, "tcp://127.0.0.1:0", "scheduler") == (none, False)
        sec, generated = token_for_server(none, "tcp://0.0.0.0:0", "scheduler")
        assert generated and sec.token and none.token is None
        with pytest.raises(ValueError, match="needs the cluster's token"):
            token_for_server(none, "tcp://0.0.0.0:0", "worker")
        given = Security(token=TOKEN)
        assert token_for_server(given, "tcp://0.0.0.0:0", "worker") == (given, False)
    with config.set({"security.require-token": "always"}):
        assert token_for_server(none, "tcp://127.0.0.1:0", "scheduler")[1]
    with config.set({"security.require-token": "never"}):
        assert token_for_server(none, "tcp://0.0.0.0:0", "worker") == (none, False)
    with config.set({"security.require-token": "sometimes"}), \
            pytest.raises(ValueError, match="require-token"):
        token_for_server(none, "tcp://0.0.0.0:0", "worker")


def test_security_keeps_dasks_interface() -> None:
    sec = Security(tls_ca_file="ca.pem", tls_client_cert="c.pem", tls_client_key="c.key",
                   tls_ciphers="ECDHE+AESGCM", tls_min_version=ssl.TLSVersion.TLSv1_3)
    assert sec.require_encryption  # TLS files given: as dask
    assert sec.get_tls_config_for_role("client") == {
        "ca_file": "ca.pem", "ciphers": "ECDHE+AESGCM", "cert": "c.pem", "key": "c.key"}
    assert sec.get_tls_config_for_role("worker")["cert"] is None
    with pytest.raises(ValueError, match="role"):
        sec.get_tls_config_for_role("nanny")
    assert Security(require_encryption=False).require_encryption is False
    with pytest.raises(ValueError, match="tls_min_version"):
        Security(tls_min_version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(NotImplementedError, match="extra_conn_args"):
        Security(extra_conn_args={"x": 1})
    with pytest.raises(TypeError):
        Security(tls_ca_file=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Security(no_such_field=1)  # type: ignore[call-arg]


def test_security_reads_dask_style_settings() -> None:
    with config.set({"comm.tls.ca-file": "ca.pem", "comm.tls.worker.cert": "w.pem",
                     "comm.tls.min-version": 1.3, "comm.require-encryption": False}):
        sec = Security()
        assert (sec.tls_ca_file, sec.tls_worker_cert) == ("ca.pem", "w.pem")
        assert sec.tls_min_version == ssl.TLSVersion.TLSv1_3 and not sec.require_encryption


def test_the_token_never_shows_in_a_repr() -> None:
    sec = Security(token=TOKEN, tls_ca_file="ca.pem")
    assert TOKEN not in repr(sec) and "token=***" in repr(sec)
    assert f"Local ({os.path.abspath('ca.pem')})" in repr(sec)


def test_a_security_travels_to_children_in_the_environment() -> None:
    sec = Security.temporary(token=TOKEN)
    env = security_env(sec)
    assert list(env) == [ENV_VAR]
    back = security_from_env(env)
    assert back == sec and back is not None and back.token == TOKEN
    assert back.tls_min_version == ssl.TLSVersion.TLSv1_2
    assert security_from_env({}) is None
    with pytest.raises(ValueError, match=ENV_VAR):
        security_from_env({ENV_VAR: "{not json"})


def test_security_pickles_without_its_ssl_contexts() -> None:
    import pickle

    sec = Security.temporary(token=TOKEN)
    assert sec.ssl_context("client", server_side=False) is not None
    back = pickle.loads(pickle.dumps(sec))
    assert back == sec and back._contexts == {}


def test_bad_tls_files_are_clear_errors(tmp_path: Path) -> None:
    missing = Security(tls_ca_file=str(tmp_path / "nope.pem"), tls_client_cert="c.pem")
    with pytest.raises(ValueError, match="CA certificate"):
        missing.ssl_context("client", server_side=False)
    temp = Security.temporary()
    garbage = temp.replace(tls_client_cert="-----BEGIN CERTIFICATE-----\nnope\n")
    with pytest.raises(ValueError, match="cannot load the certificate"):
        garbage.ssl_context("client", server_side=False)
