"""The configuration: sources, precedence, units, children, and that every
key the code reads is a documented default."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from shoal import config
from shoal.units import format_bytes, parse_bytes, parse_timedelta

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _leaves(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _leaves(v, path + ".")
        else:
            out.add(path)
    return out


DEFAULT_KEYS = _leaves(yaml.safe_load((ROOT / "shoal" / "config.yaml").read_text()))


def test_every_default_is_documented_and_every_documented_key_exists() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9.-]+)` \|", doc, re.M))
    assert DEFAULT_KEYS - documented == set()
    assert documented - DEFAULT_KEYS == set()


def test_every_key_the_code_reads_has_a_default() -> None:
    """``config.get("x.y")``, ``config.duration(...)``, ``config.size(...)``."""
    read = set()
    for path in (ROOT / "shoal").rglob("*.py"):
        read |= set(re.findall(r'config\.(?:get|duration|size)\(\s*"([a-z0-9.-]+)"', path.read_text()))
    assert read, "the scan found nothing: the pattern is out of date"
    unknown = {k for k in read if k not in DEFAULT_KEYS and not any(d.startswith(k + ".") for d in DEFAULT_KEYS)}
    assert unknown == set()


def test_set_is_a_context_manager_and_restores() -> None:
    before = config.get("scheduler.allowed-failures")
    with config.set({"scheduler.allowed-failures": before + 4}):
        assert config.get("scheduler.allowed-failures") == before + 4
    assert config.get("scheduler.allowed-failures") == before


def test_unknown_key_names_the_key() -> None:
    with pytest.raises(KeyError, match="no-such-setting"):
        config.get("scheduler.no-such-setting")
    assert config.get("scheduler.no-such-setting", None) is None


def test_malformed_value_names_the_key() -> None:
    with config.set({"comm.timeouts.connect": "soon"}), pytest.raises(ValueError, match=r"comm\.timeouts\.connect"):
        config.duration("comm.timeouts.connect")


def _run(code: str, env: dict[str, str], cwd: pathlib.Path | None = None) -> str:
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SHOAL_")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True,
                         text=True, timeout=60, check=True, cwd=cwd)
    return out.stdout.strip()


def test_environment_yaml_and_precedence(tmp_path: pathlib.Path) -> None:
    """A YAML file named by SHOAL_CONFIG is read; an environment variable wins over it."""
    (tmp_path / "shoal.yaml").write_text("scheduler:\n  allowed-failures: 11\n  worker-ttl: 5s\n")
    code = "from shoal import config; print(config.get('scheduler.allowed-failures'), config.duration('scheduler.worker-ttl'))"
    assert _run(code, {"SHOAL_CONFIG": str(tmp_path)}) == "11 5.0"
    assert _run(code, {"SHOAL_CONFIG": str(tmp_path), "SHOAL_SCHEDULER__ALLOWED_FAILURES": "12"}) == "12 5.0"


def test_older_environment_variables_still_work() -> None:
    code = ("from shoal import config; print(config.get('worker.shared-memory.enabled'), "
            "config.duration('comm.busy-poll'), config.get('local-cluster.forkserver'))")
    assert _run(code, {"SHOAL_SHM": "off", "SHOAL_POLL_US": "0", "SHOAL_FORKSERVER": "0"}) == "False 0.0 False"


def test_children_inherit_the_parents_configuration() -> None:
    """What a LocalCluster passes its processes: values set in Python included."""
    code = ("from shoal import config; config.set({'scheduler.allowed-failures': 21}); "
            "import json; print(json.dumps(config.env_for_children()))")
    env = __import__("json").loads(_run(code, {}))
    child = "from shoal import config; print(config.get('scheduler.allowed-failures'))"
    assert _run(child, env) == "21"
    # the child's own environment still wins over what it inherited
    assert _run(child, {**env, "SHOAL_SCHEDULER__ALLOWED_FAILURES": "22"}) == "22"


def test_importing_shoal_config_does_not_load_donfig() -> None:
    """The client reads the configuration after it launched the fork server."""
    code = "import sys, shoal.config; print('donfig' in sys.modules, 'yaml' in sys.modules)"
    assert _run(code, {}) == "False False"


@pytest.mark.parametrize(("text", "expected"), [
    ("4GB", 4 * 10**9), ("512 MiB", 512 * 2**20), ("1e3", 1000), (100, 100), ("16KiB", 16384),
    ("2.5kb", 2500),
])
def test_parse_bytes(text: object, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", 30.0), ("500ms", 0.5), ("2 minutes", 120.0), (3, 3.0), ("300us", 300e-6), ("1h", 3600.0),
])
def test_parse_timedelta(text: object, expected: float) -> None:
    assert parse_timedelta(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["lots", "4 parsecs", "", True, None, [1]])
def test_bad_units_are_clear_errors(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_bytes(bad)
    with pytest.raises((ValueError, TypeError)):
        parse_timedelta(bad)


def test_format_bytes() -> None:
    assert format_bytes(2 * 2**30) == "2.00 GiB"
    assert format_bytes(12) == "12 B"
