"""The rules that turn dask's options and keywords into what shoal starts:
sizes, memory limits, resources, ports, preload arguments, child command
lines, LocalCluster's keywords, the idle clock.  Pure functions, no processes."""

from __future__ import annotations

import logging
import pathlib

import pytest

from shoal.cli.main import build_parser, split_preload_argv
from shoal.cli.servers import UsageError, worker_ports
from shoal.cluster.local_options import default_sizes, plan
from shoal.deploy.child_args import log_level_name, scheduler_argv, worker_argv
from shoal.deploy.preload import Preloads, import_preload
from shoal.deploy.scheduler import IdleClock, listen_address
from shoal.deploy.sizing import (
    default_nthreads,
    nprocesses_nthreads,
    parse_memory_limit,
    parse_nworkers,
    parse_resources,
    system_memory,
)

GB = 10**9


@pytest.mark.parametrize(("value", "expected"), [
    ("0.5", 8 * GB),         # a fraction written on the command line (was: no limit)
    (0.25, 4 * GB),
    (1, 16 * GB),            # a number at most 1 is a fraction, as in dask
    ("4GB", 4 * GB),
    ("2 GiB", 2 * 2**30),
    (3e9, 3 * GB),
    ("3e9", 3 * GB),
    (5_000_000_000, 5 * GB),
    ("auto", 4 * GB),        # 2 threads of 8 cores
    (0, 0), ("0", 0), (None, 0), ("none", 0),
    ("64GB", 16 * GB),       # more than the machine: the machine's
])
def test_memory_limits_as_dask_reads_them(value: object, expected: int) -> None:
    assert parse_memory_limit(value, nthreads=2, total_cores=8, total=16 * GB) == expected


@pytest.mark.parametrize("bad", ["lots", "4 parsecs", -1, [1]])
def test_a_bad_memory_limit_names_itself(bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="memory"):
        parse_memory_limit(bad, total=16 * GB)


def test_the_machine_has_memory() -> None:
    assert system_memory() > 0


def test_workers_and_threads_split_the_cores_as_dask() -> None:
    assert nprocesses_nthreads(2) == (2, 1)
    assert nprocesses_nthreads(4) == (4, 1)
    assert nprocesses_nthreads(12) == (4, 3)
    assert nprocesses_nthreads(32) == (8, 4)
    assert parse_nworkers("-1", cores=8) == (8, None)
    assert parse_nworkers(-3, cores=8) == (6, None)
    assert parse_nworkers("auto", cores=12) == (4, 3)
    assert parse_nworkers(None, cores=8) == (1, None)
    assert default_nthreads(3, cores=8) == 2
    assert default_nthreads(16, cores=8) == 1  # never 0 threads
    with pytest.raises(ValueError, match="no worker"):
        parse_nworkers(-9, cores=8)
    with pytest.raises(ValueError, match="'auto'"):
        parse_nworkers("many", cores=8)


def test_local_cluster_sizes_as_dask() -> None:
    assert default_sizes(None, None, True, cores=12) == (4, 3)
    assert default_sizes(None, None, False, cores=12) == (1, 12)
    assert default_sizes(None, 4, True, cores=12) == (3, 4)
    assert default_sizes(None, 4, False, cores=12) == (1, 4)
    assert default_sizes(5, None, True, cores=12) == (5, 3)  # rounds up: overcommit
    assert default_sizes(0, None, True, cores=12) == (0, 12)


def test_resources_with_spaces_or_commas() -> None:
    assert parse_resources("GPU=2 MEM=10e9") == {"GPU": 2.0, "MEM": 1e10}
    assert parse_resources("GPU=2,MEM=1") == {"GPU": 2.0, "MEM": 1.0}
    assert parse_resources({"A": 1}) == {"A": 1.0}
    assert parse_resources(None) == {}
    with pytest.raises(ValueError, match="GPU=2"):
        parse_resources("GPU")
    with pytest.raises(ValueError, match="number"):
        parse_resources("GPU=two")


def test_worker_ports_and_ranges() -> None:
    assert worker_ports(None, 2) == [0, 0]
    assert worker_ports("9000", 1) == [9000]
    assert worker_ports("9000:9010", 3) == [9000, 9001, 9002]
    with pytest.raises(UsageError, match="not enough"):
        worker_ports("9000", 2)
    with pytest.raises(UsageError, match="range"):
        worker_ports("nine", 1)


def test_trailing_arguments_go_to_the_preload_not_to_the_scheduler_address() -> None:
    head, tail = split_preload_argv(["worker", "--preload", "m", "--flag", "3"])
    assert head == ["worker", "--preload", "m"] and tail == ["--flag", "3"]
    head, tail = split_preload_argv(["worker", "tcp://a:1", "--nthreads", "2", "--", "x"])
    assert head == ["worker", "tcp://a:1", "--nthreads", "2"] and tail == ["x"]
    head, tail = split_preload_argv(["scheduler", "--port=0", "--preload", "m", "--x=1"])
    assert head == ["scheduler", "--port=0", "--preload", "m"] and tail == ["--x=1"]
    assert split_preload_argv(["demo", "--files", "3"]) == (["demo", "--files", "3"], [])


def test_every_child_option_is_one_the_worker_command_knows() -> None:
    """LocalCluster and the nanny start workers with these command lines."""
    argv = worker_argv("tcp://127.0.0.1:8786", {
        "nthreads": 2, "name": "w", "host": "127.0.0.1", "port": 9000, "memory_limit": 123,
        "resources": {"GPU": 1}, "local_directory": "/tmp/x", "death_timeout": 5,
        "lifetime": "1h", "lifetime_stagger": "5m", "lifetime_restart": True,
        "preload": ["a", "b.py"], "preload_argv": ["--x", "1"], "dashboard_address": ":0",
        "dashboard": False, "validate": True, "heartbeat_interval": "2s",
        "silence_logs": logging.ERROR, "listen_address": None,
    })
    head, tail = split_preload_argv(argv)
    assert tail == []
    args = build_parser().parse_args(head)
    assert (args.nthreads, args.name, args.worker_port, args.memory_limit) == (2, "w", "9000", "123")
    assert args.preload == ["a", "b.py"] and args.preload_argv == "--x 1"
    assert args.lifetime_restart is True and args.dashboard is False and args.validate
    assert args.resources == "GPU=1.0" and args.log_level == "ERROR" and not args.nanny
    with pytest.raises(NotImplementedError, match="plugins"):
        worker_argv("tcp://h:1", {"plugins": [object()]})


def test_every_child_option_is_one_the_scheduler_command_knows() -> None:
    argv = ["scheduler", *scheduler_argv({
        "idle_timeout": "1h", "preload": "m", "validate": True, "allowed_failures": 7,
        "worker_ttl": "5m", "blocked_handlers": ["a", "b"], "dashboard_address": ":0"})]
    args = build_parser().parse_args(argv)
    assert (args.idle_timeout, args.preload, args.allowed_failures) == ("1h", ["m"], 7)
    assert args.blocked_handlers == "a,b" and args.worker_ttl == "5m"
    with pytest.raises(NotImplementedError, match="extensions"):
        scheduler_argv({"extensions": {"x": object}})


def test_log_levels_from_silence_logs() -> None:
    assert log_level_name(logging.WARN) == "WARNING"
    assert log_level_name("error") == "ERROR"
    assert log_level_name(None) == log_level_name(False) == "INFO"


def test_listen_addresses_from_dask_keywords() -> None:
    assert listen_address(None, 0, None) == "tcp://127.0.0.1:0"
    assert listen_address("0.0.0.0", "8786", None) == "tcp://0.0.0.0:8786"
    assert listen_address("tcp://10.0.0.1:9000", None, None) == "tcp://10.0.0.1:9000"
    assert listen_address("10.0.0.1:9000", None, None) == "tcp://10.0.0.1:9000"
    assert listen_address(None, 0, "inproc://").startswith("inproc://")
    with pytest.raises(ValueError, match="port"):
        listen_address("h", "eighty", None)


def test_the_idle_clock_counts_from_the_last_change() -> None:
    clock = IdleClock(10.0)
    assert not clock.expired(0.0, transitions=5, busy=False)   # first look: a change
    assert not clock.expired(1.0, transitions=5, busy=False)   # idle from now
    assert not clock.expired(10.0, transitions=5, busy=False)
    assert clock.expired(11.0, transitions=5, busy=False)
    assert not clock.expired(12.0, transitions=6, busy=False)  # a task moved: start again
    assert not clock.expired(30.0, transitions=6, busy=True)   # running tasks are not idle
    assert not clock.expired(31.0, transitions=6, busy=False)
    assert clock.expired(41.0, transitions=6, busy=False)


def _plan(**kwargs: object) -> object:
    base: dict[str, object] = dict(
        n_workers=1, threads_per_worker=1, processes=None, loop=None, start=None, host=None,
        ip=None, silence_logs=logging.WARN, worker_dashboard_address=None, services=None,
        worker_services=None, service_kwargs=None, security=None, protocol=None,
        blocked_handlers=None, interface=None, worker_class=None, scheduler_kwargs=None,
        validate=False, worker_kwargs={})
    base.update(kwargs)
    return plan(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"loop": object()}, "loop"),
    ({"services": {"x": object}}, "services"),
    ({"worker_services": {"x": object}}, "worker_services"),
    ({"service_kwargs": {"x": {}}}, "service_kwargs"),
    ({"protocol": "ucx://"}, "protocol"),
    ({"protocol": "inproc"}, "protocol"),  # worker processes need a network
    ({"worker_class": "my.GPUWorker"}, "worker_class"),
    ({"worker_class": "shoal.Nanny", "processes": False}, "worker_class"),
])
def test_local_cluster_refuses_what_it_cannot_honour_by_name(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(NotImplementedError, match=name):
        _plan(**kwargs)


def test_local_cluster_keywords_become_the_plan() -> None:
    from shoal import Nanny, Worker

    p = _plan(worker_class=Worker)
    assert not p.processes and p.protocol == "inproc"  # type: ignore[attr-defined]
    p = _plan(worker_class=Nanny, host="tcp://127.0.0.1")
    assert p.processes and p.protocol == "tcp" and p.host == "127.0.0.1"  # type: ignore[attr-defined]
    p = _plan(processes=False, protocol="tcp://", silence_logs=None, blocked_handlers=["x"],
              scheduler_kwargs={"idle_timeout": "1h"}, validate=True,
              worker_kwargs={"memory_limit": "2GB", "lifetime": "1h"}, worker_dashboard_address=":0")
    assert p.protocol == "tcp" and p.log_level is None  # type: ignore[attr-defined]
    assert p.memory_limit == min(2 * GB, system_memory())  # type: ignore[attr-defined]
    assert p.scheduler_kwargs == {"idle_timeout": "1h", "blocked_handlers": ["x"], "validate": True}  # type: ignore[attr-defined]
    assert p.worker_kwargs == {"lifetime": "1h", "dashboard_address": ":0", "validate": True}  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="ip"):
        p = _plan(ip="127.0.0.2")
    assert p.host == "127.0.0.2"  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="no effect"):
        _plan(start=True)
    with pytest.raises(TypeError, match="no_such_keyword"):
        _plan(worker_kwargs={"no_such_keyword": 1})
    with pytest.raises(TypeError, match="nthreads"):
        _plan(worker_kwargs={"nthreads": 3})


def test_preloads_load_from_a_name_a_file_or_text(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "my_setup_module.py"
    path.write_text("def dask_setup(server):\n    server.seen = True\n")
    assert import_preload(str(path)).dask_setup is not None
    assert import_preload("import json\nX = 1").X == 1
    assert import_preload("json").dumps is not None
    with pytest.raises(NotImplementedError, match="web"):
        import_preload("https://example.com/setup.py")
    with pytest.raises(ImportError, match="no_such_preload_module"):
        import_preload("no_such_preload_module")
    with pytest.raises(ValueError, match="click"):
        Preloads(object(), [str(path)], ["--flag"])
