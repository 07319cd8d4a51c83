"""Workers from a batch system (SLURM, PBS...): ``JobQueueCluster`` and its
``Job``, with dask-jobqueue's names and keywords.

The scheduler runs in this process (as dask-jobqueue's); each ``Job`` is
one batch job whose script starts ``processes`` workers under one nanny::

    #!/usr/bin/env bash
    #SBATCH -J shoal-worker            <- the batch system's directives
    ...
    module load python                  <- job_script_prologue
    read -r SHOAL_TOKEN < ~/.shoal/.SLURMCluster-1f3c.token || ...
    export SHOAL_TOKEN                  <- only when the cluster has a token
    /usr/bin/python3 -m shoal worker tcp://10.0.0.1:40123 --name SLURMCluster-0 ...

``job_script()`` shows it.  Starting a job submits the script
(``submit_command``, e.g. ``sbatch``) and reads the job id from the answer;
closing it cancels the job (``cancel_command``, e.g. ``scancel``).  The
cluster is a ``SpecCluster``: one spec entry per job, its workers named
``<job name>-0``, ``-1``..., so ``scale(n)`` (workers), ``scale(jobs=n)``,
``adapt(minimum_jobs=, maximum_jobs=)`` and ``close()`` (every job it
submitted cancelled) work as in dask-jobqueue.

Settings: ``jobqueue.<config_name>.<keyword>`` (``config_name``: ``slurm``,
``pbs``), as dask-jobqueue's ``jobqueue.yaml``.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import math
import os
import re
import shlex
import sys
import tempfile
import warnings
from typing import Any, ClassVar

from shoal.deploy.spec import ProcessInterface, SpecCluster

logger = logging.getLogger("shoal.deploy.jobqueue")

#: dask-jobqueue's old keyword names, honoured with its FutureWarning: old -> new
RENAMED = {"extra": "worker_extra_args", "job_extra": "job_extra_directives",
           "env_extra": "job_script_prologue", "header_skip": "job_directives_skip"}


def setting(config_name: str, key: str, given: Any) -> Any:
    """``given``, else the setting ``jobqueue.<config_name>.<key>``."""
    if given is not None:
        return given
    from shoal import config

    return config.get(f"jobqueue.{config_name}.{key}", None)


def shell_word(text: str) -> str:
    """``text`` as one word of the job's shell command: quoted, except that a
    ``$VARIABLE`` in it is left for the job's shell to expand (``$TMPDIR``
    on the compute node, as people write it for ``local_directory``)."""
    if "$" not in text:
        return shlex.quote(text)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`")
    return f'"{escaped}"'


def _renamed(old: str, old_value: Any, new_value: Any) -> Any:
    """dask-jobqueue's rule for a renamed keyword: the old one is used (with
    a FutureWarning) when the new one is not set."""
    if old_value is None:
        return new_value
    warnings.warn(f"{old} has been renamed to {RENAMED[old]}; {old} will be removed",
                  FutureWarning, stacklevel=4)
    return new_value or old_value


class Job(ProcessInterface, abc.ABC):
    """One batch job running ``processes`` shoal workers (dask-jobqueue's
    keywords).  cores, memory: the job's total (required, or from the
    settings); processes: workers in the job (default about sqrt(cores));
    nanny: restart workers that die (default); interface: network interface
    the workers listen on (eth0, ib0); death_timeout: seconds a worker keeps
    trying to reach the scheduler; local_directory: scratch space;
    worker_command: what ``python -m`` runs (default "shoal worker");
    worker_extra_args: more ``shoal worker`` options; job_extra_directives:
    more batch directives; job_script_prologue: shell lines run first;
    job_directives_skip: drop generated directives containing these;
    log_directory: where the batch system writes the job's output; shebang;
    python: the interpreter on the compute nodes (default: this one);
    job_name; config_name: the settings section.  token_file (shoal's): a
    0600 file holding the cluster's token, read into the job's
    environment (the cluster writes it)."""

    submit_command: ClassVar[str | None] = None
    cancel_command: ClassVar[str | None] = None
    config_name: ClassVar[str | None] = None
    job_id_regexp: ClassVar[str] = r"(?P<job_id>\d+)"
    _script_template = "%(shebang)s\n\n%(job_header)s\n%(job_script_prologue)s\n%(worker_command)s\n"

    @abc.abstractmethod
    def __init__(
        self,
        scheduler: str | None = None,
        name: Any = None,
        cores: int | None = None,
        memory: str | int | None = None,
        processes: int | None = None,
        nanny: bool = True,
        protocol: str | None = None,
        security: Any = None,
        interface: str | None = None,
        death_timeout: float | str | None = None,
        local_directory: str | None = None,
        extra: list[str] | None = None,
        worker_command: str | None = None,
        worker_extra_args: list[str] | None = None,
        job_extra: list[str] | None = None,
        job_extra_directives: list[str] | None = None,
        env_extra: list[str] | None = None,
        job_script_prologue: list[str] | None = None,
        header_skip: list[str] | None = None,
        job_directives_skip: list[str] | None = None,
        log_directory: str | None = None,
        shebang: str | None = None,
        python: str | None = None,
        job_name: str | None = None,
        config_name: str | None = None,
        token_file: str | None = None,
    ) -> None:
        from shoal.deploy.keywords import check_protocol
        from shoal.deploy.sizing import nprocesses_nthreads
        from shoal.units import parse_bytes

        super().__init__()
        self.scheduler = scheduler
        self.job_id: str | None = None
        self.config_name = config_name or self.default_config_name()  # type: ignore[misc]
        c = self.config_name
        cores = setting(c, "cores", cores)
        memory = setting(c, "memory", memory)
        if cores is None or memory is None:
            cluster = type(self).__name__.replace("Job", "Cluster")
            raise ValueError("say how many cores and how much memory each job has, for example "
                             f"{cluster}(cores={cores or 8}, memory={memory or '24GB'!r})")
        if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
            raise ValueError(f"cores must be a positive int, got {cores!r}")
        processes = setting(c, "processes", processes)
        if processes is None:
            processes = nprocesses_nthreads(cores)[0]
        if not isinstance(processes, int) or isinstance(processes, bool) or not 1 <= processes <= cores:
            raise ValueError(f"processes must be an int from 1 to cores ({cores}), got {processes!r}")
        if processes > 1 and not nanny:
            raise ValueError("processes > 1 needs nanny=True (one nanny runs the job's workers)")
        check_protocol(protocol, ("tcp",))
        if security is not None and getattr(security, "token", None) is None:
            raise NotImplementedError(f"{type(self).__name__}(security=...): shoal's jobs carry "
                                      "the cluster's token only (no TLS files)")
        worker_extra_args = list(_renamed("extra", extra, setting(c, "worker-extra-args",
                                                                  worker_extra_args)) or [])
        self.job_extra_directives = list(_renamed(
            "job_extra", job_extra, setting(c, "job-extra-directives", job_extra_directives)) or [])
        self._job_script_prologue = list(_renamed(
            "env_extra", env_extra, setting(c, "job-script-prologue", job_script_prologue)) or [])
        self.job_directives_skip = set(_renamed(
            "header_skip", header_skip, setting(c, "job-directives-skip", job_directives_skip)) or [])
        self.worker_memory = parse_bytes(memory)
        self.worker_processes = processes
        self.worker_cores = cores
        self.name = name
        self.job_name = setting(c, "name", job_name)
        self.shebang = setting(c, "shebang", shebang) or "#!/usr/bin/env bash"
        self.log_directory = setting(c, "log-directory", log_directory)
        if self.log_directory is not None:
            os.makedirs(self.log_directory, exist_ok=True)
        self.token_file = token_file
        #: set by each batch system's job class from its directives
        self.job_header = ""
        interface = setting(c, "interface", interface)
        if interface:
            worker_extra_args += ["--interface", interface]
        if protocol:
            worker_extra_args += ["--protocol", protocol]
        command = [setting(c, "python", python) or sys.executable, "-m",
                   *shlex.split(setting(c, "worker-command", worker_command) or "shoal worker"),
                   str(scheduler), "--name", str(name),
                   "--nthreads", str(self.worker_process_threads),
                   "--memory-limit", self.worker_process_memory]
        if processes > 1:
            command += ["--nworkers", str(processes)]
        command.append("--nanny" if nanny else "--no-nanny")
        death_timeout = setting(c, "death-timeout", death_timeout)
        if death_timeout is not None:
            command += ["--death-timeout", str(death_timeout)]
        local_directory = setting(c, "local-directory", local_directory)
        if local_directory is not None:
            command += ["--local-directory", str(local_directory)]
        self._command_template = " ".join(shell_word(str(a)) for a in [*command, *worker_extra_args])

    @classmethod
    def default_config_name(cls) -> str:
        if cls.config_name is None:
            raise ValueError(f"{cls.__name__} needs a config_name class attribute (the "
                             "jobqueue.<name> settings section)")
        return cls.config_name

    @property
    def worker_process_threads(self) -> int:
        return max(1, self.worker_cores // self.worker_processes)

    @property
    def worker_process_memory(self) -> str:
        return str(self.worker_memory // self.worker_processes)

    def _directives(self, lines: list[str], prefix: str) -> str:
        """The header: generated ``lines`` less those skipped, then the extra directives."""
        kept = [line for line in lines if not any(skip in line for skip in self.job_directives_skip)]
        return "\n".join([*kept, *(f"{prefix} {arg}" for arg in self.job_extra_directives)])

    def job_script(self) -> str:
        """The batch script this job submits."""
        from shoal.deploy.credentials import read_token_lines

        prologue = [line for line in self._job_script_prologue if line]
        if self.token_file:
            prologue += read_token_lines(self.token_file)
        return self._script_template % {
            "shebang": self.shebang, "job_header": self.job_header,
            "job_script_prologue": "\n".join(prologue), "worker_command": self._command_template}

    async def start(self) -> None:
        """Submit the job (it need not be running when this returns)."""
        fd, path = tempfile.mkstemp(prefix="shoal-job-", suffix=".sh")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.job_script())
            assert self.submit_command is not None
            out = await self._call([*shlex.split(self.submit_command), path])
        finally:
            os.unlink(path)
        self.job_id = self._job_id_from_submit_output(out)
        logger.debug("submitted job %s for %s", self.job_id, self.name)
        await super().start()

    def _job_id_from_submit_output(self, out: str) -> str:
        match = re.search(self.job_id_regexp, out)
        if match is None or match.groupdict().get("job_id") is None:
            raise ValueError(f"could not find the job id in what {self.submit_command} said "
                             f"(looking for {self.job_id_regexp!r}):\n{out}")
        return match.group("job_id")

    async def close(self) -> None:
        """Cancel the job (a job already gone is fine)."""
        if self.status == "closed":
            return
        self.status = "closing"
        await self._close_job(self.job_id, self.cancel_command)
        await super().close()

    @classmethod
    async def _close_job(cls, job_id: str | None, cancel_command: str | None) -> None:
        if job_id and cancel_command:
            try:
                await cls._call([*shlex.split(cancel_command), job_id])
            except RuntimeError as e:  # the job had ended already
                logger.debug("cancelling job %s: %s", job_id, e)

    @staticmethod
    async def _call(cmd: list[str], **kwargs: Any) -> str:
        """Run ``cmd``; its output, or ``RuntimeError`` with everything it said."""
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, **kwargs)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} exited with code {proc.returncode}\n"
                               f"stdout:\n{out.decode(errors='replace')}\n"
                               f"stderr:\n{err.decode(errors='replace')}")
        return out.decode(errors="replace")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} job {self.job_id}: {self.status}>"


class JobQueueCluster(SpecCluster):
    """A scheduler here and workers in batch jobs (dask-jobqueue's keywords;
    rarely used directly: ``SLURMCluster``, ``PBSCluster``).

    n_workers: workers to start at once (in jobs of ``processes``); job_cls:
    the ``Job`` class; security: an object with the cluster's ``token``
    (default: setting ``security.token``, ``SHOAL_TOKEN``);
    shared_temp_directory: where the token file for the jobs goes, on a file
    system the compute nodes see (default ``~/.shoal``); scheduler_options:
    the scheduler's keywords (default: listening on every interface, or on
    ``interface``'s address); scheduler_cls: its class; interface, protocol:
    for the scheduler and the workers; config_name: the settings section;
    ``dashboard_address`` and ``host`` go in scheduler_options, as in
    dask-jobqueue.  Other keywords are the ``Job``'s.
    """

    #: the Job class of a subclass (``job_cls=`` overrides it for one cluster)
    job_cls: type[Job] | None = None

    def __init__(
        self,
        n_workers: int = 0,
        job_cls: type[Job] | None = None,
        loop: Any = None,
        security: Any = None,
        shared_temp_directory: str | None = None,
        silence_logs: Any = "error",
        name: str | None = None,
        asynchronous: bool = False,
        dashboard_address: str | None = None,
        host: str | None = None,
        scheduler_options: dict[str, Any] | None = None,
        scheduler_cls: Any = None,
        interface: str | None = None,
        protocol: str | None = None,
        config_name: str | None = None,
        **job_kwargs: Any,
    ) -> None:
        from shoal.deploy.credentials import cluster_token, write_token_file

        self.job_cls = job_cls or type(self).job_cls
        if self.job_cls is None:
            raise ValueError(f"{type(self).__name__} needs a Job class: a job_cls class attribute, "
                             "or job_cls=")
        for keyword, value in (("dashboard_address", dashboard_address), ("host", host)):
            if value is not None:
                raise ValueError(f"give {keyword} in scheduler_options: "
                                 f"{type(self).__name__}(..., scheduler_options={{{keyword!r}: "
                                 f"{value!r}}})")
        config_name = config_name or self.job_cls.default_config_name()
        interface = setting(config_name, "interface", interface)
        options = dict(setting(config_name, "scheduler-options", scheduler_options) or {})
        if protocol is not None:
            options.setdefault("protocol", protocol)
        if security is not None:
            options.setdefault("security", security)
        if "host" not in options and "interface" not in options:
            if interface:
                options["interface"] = interface
            else:
                options["host"] = "0.0.0.0"  # the jobs run on other machines
        if scheduler_cls is None:
            from shoal.deploy.scheduler import Scheduler as scheduler_cls
        self.shared_temp_directory = (setting(config_name, "shared-temp-directory",
                                              shared_temp_directory) or "~/.shoal")
        job_kwargs.update(config_name=config_name, interface=interface, protocol=protocol)
        self._job_kwargs = job_kwargs
        processes = self._dummy_job.worker_processes  # checks the keywords now
        self._token_file: str | None = None
        token = cluster_token(security)
        if token:
            self._token_file = write_token_file(self.shared_temp_directory,
                                                name or type(self).__name__, token)
            job_kwargs["token_file"] = self._token_file
        worker: dict[str, Any] = {"cls": self.job_cls, "options": job_kwargs}
        if processes > 1:
            worker["group"] = [f"-{i}" for i in range(processes)]
        try:
            super().__init__(scheduler={"cls": scheduler_cls, "options": options}, worker=worker,
                             loop=loop, security=security, silence_logs=silence_logs, name=name,
                             asynchronous=asynchronous)
        except BaseException:
            self._remove_token_file()
            raise
        if n_workers:
            self.scale(n_workers)

    @property
    def _dummy_job(self) -> Job:
        """A job like those the cluster submits (named "dummy-name"), for
        ``job_script()`` and to check the keywords."""
        address = self.scheduler_address if getattr(self, "scheduler_address", "") else \
            "tcp://<insert-scheduler-address-here>:8786"
        try:
            return self.job_cls(address, name="dummy-name", **self._job_kwargs)  # type: ignore[misc]
        except TypeError as e:
            raise TypeError(f"{type(self).__name__}: {e} (a keyword for the jobs, "
                            f"job_kwargs={sorted(self._job_kwargs)})") from None

    @property
    def job_header(self) -> str:
        return self._dummy_job.job_header

    def job_script(self) -> str:
        """The script each job runs (with "dummy-name" for the job's name)."""
        return self._dummy_job.job_script()

    @property
    def job_name(self) -> str | None:
        name = self._dummy_job.job_name
        return None if name is None else str(name)

    def _new_worker_name(self, worker_number: int) -> str:
        return f"{self.name}-{worker_number}"

    def _threads_per_worker(self) -> int:
        return self._dummy_job.worker_process_threads

    def _memory_per_worker(self) -> int:
        job = self._dummy_job
        return job.worker_memory // job.worker_processes

    def scale(self, n: int | None = None, jobs: int = 0, memory: Any = None,  # type: ignore[override]
              cores: int | None = None) -> Any:
        """``n`` workers, ``jobs`` jobs, or enough jobs for ``memory`` or
        ``cores``, whichever is most."""
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 0:
            raise ValueError(f"jobs must be a number of jobs >= 0, got {jobs!r}")
        workers = self._workers_for(0 if n is None else n, memory, cores)
        jobs = max(jobs, math.ceil(workers / self._dummy_job.worker_processes))
        return super().scale(jobs * self._dummy_job.worker_processes)

    def adapt(self, *args: Any, minimum_jobs: int | None = None, maximum_jobs: int | None = None,
              **kwargs: Any) -> Any:
        """As ``cluster.adapt``, plus bounds in jobs (``minimum_jobs``, ``maximum_jobs``)."""
        processes = self._dummy_job.worker_processes
        if minimum_jobs is not None:
            kwargs["minimum"] = minimum_jobs * processes
        if maximum_jobs is not None:
            kwargs["maximum"] = maximum_jobs * processes
        return super().adapt(*args, **kwargs)

    async def _start(self) -> None:
        await super()._start()
        if self._token_file is None:
            # no token configured, but the scheduler may have made one (a
            # scheduler listening beyond loopback does, with issue 10's security)
            token = getattr(getattr(self.scheduler, "security", None), "token", None)
            if token:
                from shoal.deploy.credentials import write_token_file

                self._token_file = write_token_file(self.shared_temp_directory, self.name,
                                                    str(token))
                self._job_kwargs["token_file"] = self._token_file

    async def _close(self) -> None:
        try:
            await super()._close()
        finally:
            self._remove_token_file()

    def _remove_token_file(self) -> None:
        from shoal.deploy.credentials import remove_token_file

        remove_token_file(getattr(self, "_token_file", None))
