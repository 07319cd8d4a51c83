"""shoal's configuration, in one place: ``shoal.config``.

    import shoal
    shoal.config.get("scheduler.allowed-failures")            # 3
    with shoal.config.set({"scheduler.allowed-failures": 7}):  # for a block
        ...
    shoal.config.set({"comm.timeouts.connect": "30s"})         # for good

Sources, lowest precedence first: the defaults in ``shoal/config.yaml``;
YAML files in ``/etc/shoal``, ``<prefix>/etc/shoal``, ``~/.config/shoal``
and wherever ``SHOAL_CONFIG`` points; ``SHOAL_*`` environment variables
(``SHOAL_SCHEDULER__ALLOWED_FAILURES=7``: ``__`` between levels); values set
in Python.  The same nesting scheme as ``dask.config``, built on donfig (the
configuration engine of dask, as a package) rather than parsed by hand.

Processes a ``LocalCluster`` starts inherit the configuration of the process
that started them (``env_for_children``), so a value set in Python before
``Client()`` reaches the scheduler and the workers too.

Rules:
1. Code reads settings where it uses them, or when the object using them is
   made, never at import: the fork server imports modules once for many
   processes, which may be configured differently.
2. Every key the code reads has a default in ``config.yaml`` and a line in
   ``docs/configuration.md`` (tests/unit/test_config.py checks both).
3. Importing this module is cheap; donfig and YAML load on first use.
"""

from __future__ import annotations

import os
import threading

from shoal.units import parse_bytes, parse_timedelta

TYPE_CHECKING = False  # typing is not imported: the client reads config early
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: the environment variable carrying a parent's configuration to its children
CHILD_ENV = "SHOAL_INTERNAL_CONFIG"
#: the environment variable naming an extra YAML file or directory
PATH_ENV = "SHOAL_CONFIG"

#: short environment variables from before the configuration existed, still
#: honoured: name -> (key, how to turn the text into a value)
LEGACY_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "SHOAL_CONNECT_TIMEOUT": ("comm.timeouts.connect", float),
    "SHOAL_INLINE_BYTES": ("worker.inline-result-bytes", int),
    "SHOAL_SHM": ("worker.shared-memory.enabled", lambda s: s.lower() not in ("off", "0", "no", "false")),
    "SHOAL_SHM_MIN": ("worker.shared-memory.min-bytes", int),
    "SHOAL_POLL_US": ("comm.busy-poll", lambda s: f"{float(s)}us"),
    "SHOAL_FORKSERVER": ("local-cluster.forkserver", lambda s: s not in ("0", "off", "false", "no")),
    "SHOAL_CPROFILE_DIR": ("admin.cprofile-dir", str),
    # the cluster's token (shoal/security.py), short names for scripts
    "SHOAL_TOKEN": ("security.token", str),
    "SHOAL_TOKEN_FILE": ("security.token-file", str),
}
#: environment variables that start with SHOAL_ but are not settings (the
#: Security a parent hands its children: see shoal/security.py)
_NOT_SETTINGS = {CHILD_ENV, PATH_ENV, "SHOAL_ROOT_CONFIG", "SHOAL_INTERNAL_SECURITY", *LEGACY_ENV}

_DEFAULTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.yaml")
_lock = threading.RLock()
_config: Any = None  # the donfig.Config, made on first use
_no_default = object()


def _make() -> Any:
    import donfig
    import yaml

    with open(_DEFAULTS_FILE) as f:
        defaults = yaml.safe_load(f)
    env = {k: v for k, v in os.environ.items() if k not in _NOT_SETTINGS}
    cfg = donfig.Config("shoal", defaults=[defaults], env=env, env_prefix="SHOAL_", env_var=PATH_ENV)
    _apply_environment(cfg, env)
    return cfg


def _apply_environment(cfg: Any, env: dict[str, str]) -> None:
    """A parent's configuration, then this process's own variables on top."""
    inherited = os.environ.get(CHILD_ENV)
    if inherited:
        import donfig.config_obj

        cfg.update(donfig.config_obj.deserialize(inherited), priority="new")
        cfg.update(donfig.config_obj.collect_env("SHOAL_", env), priority="new")
    for name, (key, convert) in LEGACY_ENV.items():
        raw = os.environ.get(name)
        if raw is None:
            continue
        try:
            value = convert(raw)
        except ValueError:
            raise ValueError(f"environment variable {name}={raw!r} is not valid for {key}") from None
        cfg.set({key: value})


def _cfg() -> Any:
    global _config
    cfg = _config
    if cfg is None:
        with _lock:
            if _config is None:
                _config = _make()
            cfg = _config
    return cfg


def get(key: str, default: Any = _no_default) -> Any:
    """The value at ``key`` (dots between levels: ``"comm.timeouts.connect"``)."""
    try:
        return _cfg().get(key)
    except KeyError:
        if default is not _no_default:
            return default
        raise KeyError(f"shoal has no setting {key!r} (see docs/configuration.md)") from None


def set(arg: Any = None, **kwargs: Any) -> Any:
    """Change settings: ``set({"a.b": 1})`` or ``set(a__b=1)``; as a context
    manager the old values come back at the end of the block."""
    return _cfg().set(arg, **kwargs)


def refresh() -> None:
    """Read files and environment variables again (values set in Python are lost)."""
    global _config
    with _lock:
        _config = _make()


def to_dict() -> dict[str, Any]:
    """The whole configuration as nested dicts (a copy)."""
    import copy

    return copy.deepcopy(dict(_cfg().config))


def duration(key: str) -> float | None:
    """A duration setting in seconds (``None`` stays ``None``: no limit)."""
    value = get(key)
    if value is None:
        return None
    try:
        return parse_timedelta(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"setting {key}: {e}") from None


def size(key: str) -> int:
    """A size setting in bytes."""
    value = get(key)
    try:
        return parse_bytes(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"setting {key}: {e}") from None


def env_for_children() -> dict[str, str]:
    """Environment variables that give a child process this configuration."""
    import donfig.config_obj

    return {CHILD_ENV: donfig.config_obj.serialize(to_dict())}


def loaded() -> bool:
    """Whether the configuration was read in this process yet."""
    return _config is not None
