"""A stand-in for a batch system on this machine, for the JobQueueCluster
tests: ``sbatch``/``qsub`` really run the job script, in the background in a
session of its own; ``scancel``/``qdel`` end every process of that session
(SIGTERM, then SIGKILL after a grace period, as the real ones do);
``squeue``/``qstat`` list the jobs still running.

    python fake_batch.py sbatch SCRIPT      # "Submitted batch job 7"
    python fake_batch.py qsub SCRIPT        # "7.fakepbs"
    python fake_batch.py scancel 7          # or qdel 7

State lives in ``$FAKE_BATCH_DIR``: ``counter``, ``<id>.sh`` (a copy of the
script, as real batch systems keep one), ``<id>.pid`` (the job's session
id, kept after it ends), ``<id>.log`` (its output), ``submitted`` and
``cancelled`` (one id a line).  ``sbatch`` passes the caller's environment on to the job (SLURM's
default); ``qsub`` gives it a fresh one with only ``PATH``, ``HOME`` and
``LANG`` (PBS's default).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time

GRACE = 15.0  # seconds between SIGTERM and SIGKILL


def _dir() -> str:
    return os.environ["FAKE_BATCH_DIR"]


def _next_id() -> int:
    path = os.path.join(_dir(), "counter")
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        n = int(f.read() or 0) + 1
        f.seek(0)
        f.truncate()
        f.write(str(n))
    return n


def _append(name: str, line: str) -> None:
    with open(os.path.join(_dir(), name), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line + "\n")


def _read(name: str) -> list[str]:
    try:
        with open(os.path.join(_dir(), name)) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def live_processes(session: int) -> list[int]:
    """Processes of ``session`` that are alive (not zombies)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            out.append(int(entry))
    return out


def submit(script: str, clean_env: bool) -> int:
    job = _next_id()
    copy = os.path.join(_dir(), f"{job}.sh")
    shutil.copy(script, copy)
    env = dict(os.environ)
    if clean_env:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env["FAKE_BATCH_JOB_ID"] = str(job)
    with open(os.path.join(_dir(), f"{job}.log"), "wb") as log:
        proc = subprocess.Popen(["bash", copy], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                close_fds=True)
    with open(os.path.join(_dir(), f"{job}.pid"), "w") as f:
        f.write(str(proc.pid))
    _append("submitted", str(job))
    return job


def cancel(job_id: str) -> int:
    job = job_id.split(".")[0]
    path = os.path.join(_dir(), f"{job}.pid")
    try:
        with open(path) as f:
            session = int(f.read())
    except (OSError, ValueError):
        print(f"fake batch: invalid job id {job_id}", file=sys.stderr)
        return 1
    if job in _read("cancelled"):
        print(f"fake batch: job {job_id} has already finished", file=sys.stderr)
        return 1
    _append("cancelled", job)
    for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, 5.0)):
        for pid in live_processes(session):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while live_processes(session) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not live_processes(session):
            break
    return 0


def queue() -> int:
    print("JOBID")
    for name in sorted(os.listdir(_dir())):
        if name.endswith(".pid"):
            with open(os.path.join(_dir(), name)) as f:
                if live_processes(int(f.read())):
                    print(name[:-4])
    return 0


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command in ("sbatch", "qsub"):
        if len(args) != 1:
            print(f"fake {command}: expected one script, got {args}", file=sys.stderr)
            return 2
        job = submit(args[0], clean_env=command == "qsub")
        print(f"Submitted batch job {job}" if command == "sbatch" else f"{job}.fakepbs")
        return 0
    if command in ("scancel", "qdel"):
        return max(cancel(job) for job in args) if args else 2
    if command in ("squeue", "qstat"):
        return queue()
    print(f"fake batch: unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
