"""Moving data between the client and the workers: results, gather, scatter.

Small results came with their "done" notice and are unpickled where they are
asked for.  Large ones are fetched straight from a worker that holds them
(``GetData``); a worker that turns out not to hold a key is reported to the
scheduler (``DataMissing``), which then recomputes or re-homes it.

Scatter puts data on workers (``PutData``), then tells the scheduler
(``DataScattered``).  ``hash=True`` reuses a future this client already holds
for equal data; it never reuses a key that was released, nor shares keys
with other clients: a release racing with a new put of the same key could
otherwise free the new copy on the worker before the scheduler heard of it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from shoal.client import future as fmod
from shoal.client.digest import content_digest
from shoal.client.future import CANCELLED, FINISHED, Future, FutureState
from shoal.client.structure import futures_in, replace_futures
from shoal.errors import FutureCancelledError, FutureLost, SchedulerError, SerializationError
from shoal.protocol import messages as m
from shoal.protocol.serialize import Payload, dumps, loads
from shoal.worker import shm
from shoal.worker.sizeof import sizeof

if TYPE_CHECKING:
    from shoal.client.core import ClientCore as Client

logger = logging.getLogger("shoal.client")

_SKIP = object()
#: scattered values at most this big (pickled, no buffers) are also kept here
SCATTER_KEEP_LOCAL = 16 * 1024


def type_name(value: Any) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


# ---------------------------------------------------------------------------
# one result
# ---------------------------------------------------------------------------


def exception_of(st: FutureState) -> BaseException:
    if st.status == CANCELLED:
        exc = st.exception
        if isinstance(exc, FutureCancelledError):  # a fresh one: see exception_of_state
            return FutureCancelledError(exc.key, exc.reason, exc.msg)
        if isinstance(exc, BaseException):  # FutureLost: the client closed, the connection went
            return exc
        return FutureCancelledError(st.key, None)
    return fmod.exception_of_state(st)


def raise_for(st: FutureState) -> None:
    if st.status == CANCELLED:
        raise exception_of(st)
    raise fmod.exception_of_state(st)


def value_of(client: Client, st: FutureState, timeout: float | None = None) -> Any:
    if st.status == FINISHED:
        if st.value is not None:
            return loads(st.value)
        assert client._runner is not None
        payloads = client._runner.run_sync(fetch, client, [st], _timeout=timeout)
        return loads(payloads[st.key])
    raise_for(st)


async def value_of_async(client: Client, st: FutureState) -> Any:
    if st.status == FINISHED:
        if st.value is not None:
            return loads(st.value)
        payloads = await fetch(client, [st])
        return loads(payloads[st.key])
    raise_for(st)


# ---------------------------------------------------------------------------
# fetching from workers
# ---------------------------------------------------------------------------


async def fetch(client: Client, states: list[FutureState], attempts: int = 20) -> dict[str, Payload]:
    """Payloads of finished states, from their inline copies or their workers."""
    out: dict[str, Payload] = {st.key: st.value for st in states if st.value is not None}
    todo = [st for st in states if st.value is None]
    for _ in range(attempts):
        if not todo:
            return out
        by_worker: dict[str, list[FutureState]] = {}
        failed: list[FutureState] = []
        for st in todo:
            if st.workers:
                by_worker.setdefault(st.workers[0], []).append(st)
            else:
                failed.append(st)
        results = await asyncio.gather(
            *(_get_from(client, w, sts) for w, sts in by_worker.items()), return_exceptions=True
        )
        for (worker, sts), res in zip(by_worker.items(), results):
            if isinstance(res, SerializationError):
                raise res
            if isinstance(res, BaseException):
                logger.info("could not gather from %s: %s; asking the scheduler", worker, res)
                failed.extend(sts)
                continue
            data, missing = res
            out.update(data)
            for st in sts:
                if st.key not in data:
                    failed.append(st)
            for key in missing:
                # the scheduler's record was wrong: let it recompute or re-home
                client._send(m.DataMissing(key, [worker]))
        todo = failed
        if todo:
            await _relocate(client, todo, out)
            todo = [st for st in todo if st.key not in out]
    raise FutureLost(f"could not gather {[st.key for st in todo][:5]} after {attempts} attempts")


async def _relocate(client: Client, todo: list[FutureState], out: dict[str, Payload]) -> None:
    """Ask where the data is now; wait for results that are being recomputed."""
    who_has = await client._request("who_has", keys=[st.key for st in todo])
    for st in todo:
        st.workers = who_has.get(st.key, [])
    lost = [st for st in todo if not st.workers]
    if not lost:
        return
    await asyncio.sleep(0.05)
    await client._wait_states_async(lost, None)
    for st in lost:
        if st.status != FINISHED:
            raise_for(st)
        if st.value is not None:
            out[st.key] = st.value


async def _get_from(client: Client, worker: str, states: list[FutureState]
                    ) -> tuple[dict[str, Payload], list[str]]:
    keys = [st.key for st in states]
    reply = await client.pool.request(worker, m.GetData(client.pool.next_id(), keys, shm.host_identity()))
    if reply.errors:
        key, message = next(iter(reply.errors.items()))
        raise SerializationError(f"the result of {key!r} could not be sent from {worker}: {message}")
    data = dict(reply.data)
    unreachable = []
    for key, desc in reply.shared.items():
        attached = shm.attach(desc)  # same host: map the worker's memory, no copy
        if attached is None:
            unreachable.append(key)
            continue
        payload, record = attached
        record.close()  # the mapping keeps the memory alive as long as the value lives
        data[key] = payload
    if unreachable:
        again = await client.pool.request(worker, m.GetData(client.pool.next_id(), unreachable))
        data.update(again.data)
        return data, [*reply.missing, *again.missing]
    return data, reply.missing


# ---------------------------------------------------------------------------
# gather
# ---------------------------------------------------------------------------


def gather_sync(client: Client, futures: Any, errors: str) -> Any:
    found = list(futures_in(futures))
    _own_futures_only(client, found)
    states = [f._state for f in found]
    client._wait_states(states, None)
    remote = [st for st in states if st.status == FINISHED and st.value is None]
    payloads: dict[str, Payload] = {}
    if remote:
        assert client._runner is not None
        payloads = client._runner.run_sync(fetch, client, remote)
    return assemble(futures, payloads, errors)


async def gather_async(client: Client, futures: Any, errors: str) -> Any:
    found = list(futures_in(futures))
    _own_futures_only(client, found)
    states = [f._state for f in found]
    await client._wait_states_async(states, None)
    remote = [st for st in states if st.status == FINISHED and st.value is None]
    payloads = await fetch(client, remote) if remote else {}
    return assemble(futures, payloads, errors)


def _own_futures_only(client: Client, found: list[Future[Any]]) -> None:
    """dask's rule: a client gathers the futures it made, no other's."""
    mismatched = [f for f in found if f.client is not client]
    if mismatched:
        raise ValueError(f"Cannot gather Futures created by another client: {len(mismatched)} of "
                         f"{len(found)} (e.g. {mismatched[0].key!r}, of client "
                         f"{getattr(mismatched[0].client, 'id', '?')!r}; this client is "
                         f"{client.id!r})")


def assemble(futures: Any, payloads: dict[str, Payload], errors: str) -> Any:
    """``futures`` with every future replaced by its value."""
    cache: dict[str, Any] = {}

    def value_of_future(f: Future[Any]) -> Any:
        st = f._state
        key = st.key
        if key in cache:
            return cache[key]
        if st.status == FINISHED:
            p = st.value if st.value is not None else payloads[key]
            v = cache[key] = loads(p)
            return v
        if errors == "skip":
            return _SKIP
        raise_for(st)

    if type(futures) is list and all(type(f) is Future for f in futures):
        out = []
        for f in futures:
            v = value_of_future(f)
            if v is not _SKIP:
                out.append(v)
        return out
    return replace_futures(futures, value_of_future, _SKIP)


# ---------------------------------------------------------------------------
# scatter
# ---------------------------------------------------------------------------


async def scatter(client: Client, data: Any, workers: Any, broadcast: bool, hash: bool,
                  timeout: float | None) -> Any:
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, (list, tuple, set, frozenset)) or hasattr(data, "__next__"):
        items = [(None, x) for x in data]
    else:
        items = [(None, data)]
    keyed: list[tuple[str, Any, Payload]] = []  # what to put on workers
    held: dict[str, Future[Any]] = {}  # equal data this client already scattered
    seen: dict[str, str] = {}  # content digest -> key, within this call
    item_keys: list[str] = []  # the key of each input item, in order
    for k, value in items:
        payload = dumps(value)
        key: str | None
        if k is not None:
            key = str(k)
        else:
            digest = content_digest(payload) if hash else ""
            key = seen.get(digest) if hash else None
            if key is None and hash:
                existing = client._scattered.get(digest)
                reuse = client._future_if_finished(existing) if existing is not None else None
                if reuse is not None and existing is not None:
                    held[existing] = reuse
                    key = existing
            if key is None:
                key = f"{type(value).__name__}-{uuid.uuid4().hex}"
                if hash:
                    client._scattered[digest] = key
                    client._scattered_digest[key] = digest
            if hash:
                seen[digest] = key
        item_keys.append(key)
        if key not in held and all(key != x[0] for x in keyed):
            keyed.append((key, value, payload))
    futures = await _put_and_register(client, keyed, workers, broadcast, timeout)
    futures.update(held)
    if isinstance(data, dict):
        return {k: futures[str(k)] for k in data}
    result = [futures[k] for k in item_keys]
    if isinstance(data, (list, tuple)):
        return type(data)(result)
    if isinstance(data, (set, frozenset)) or hasattr(data, "__next__"):
        return result
    return result[0]


async def _put_and_register(client: Client, keyed: list[tuple[str, Any, Payload]], workers: Any,
                            broadcast: bool, timeout: float | None) -> dict[str, Future[Any]]:
    if not keyed:
        return {}
    targets = await scatter_targets(client, workers, timeout)
    placement: dict[str, dict[str, tuple[Any, Payload]]] = {}
    holders: dict[str, list[str]] = {}
    for i, (k, value, payload) in enumerate(keyed):
        chosen = targets if broadcast else [targets[i % len(targets)]]
        holders[k] = chosen
        for w in chosen:
            placement.setdefault(w, {})[k] = (value, payload)

    async def put(w: str, entries: dict[str, tuple[Any, Payload]]) -> None:
        nbytes = {k: sizeof(v) for k, (v, _) in entries.items()}
        types = {k: type_name(v) for k, (v, _) in entries.items()}
        payloads = {k: p for k, (_, p) in entries.items()}
        shared: dict[str, m.SharedData] = {}
        records = []
        conn = await client.pool.connection(w)
        if conn.info.get("shm_host") and conn.info["shm_host"] == shm.host_identity():
            for k, p in list(payloads.items()):  # same host: hand over memory, not bytes
                written = shm.write_shared(p)
                if written is not None:
                    record, _ = written
                    records.append(record)
                    shared[k] = record.describe()
                    del payloads[k]
        try:
            ack = await client.pool.request(w, m.PutData(client.pool.next_id(), payloads, nbytes, types,
                                                         shared), timeout)
            if ack.unreachable:  # could not map them there after all: send the bytes
                again = {k: entries[k][1] for k in ack.unreachable}
                ack = await client.pool.request(w, m.PutData(client.pool.next_id(), again, nbytes, types),
                                                timeout)
        finally:
            for record in records:
                record.close()  # the worker holds the memory by now (or never will)
        if ack.error:
            raise SchedulerError(f"{w} refused scattered data: {ack.error}")

    results = await asyncio.gather(*(put(w, e) for w, e in placement.items()), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        # the copies that did arrive: let the scheduler know, then let go of them
        done = {w for w, r in zip(placement, results) if not isinstance(r, BaseException)}
        landed = [m.ScatteredKey(k, [w for w in holders[k] if w in done], sizeof(v), type_name(v))
                  for k, v, _ in keyed if any(w in done for w in holders[k])]
        if landed:
            client._send(m.DataScattered(landed))
            client._send(m.ReleaseKeys([s.key for s in landed]))
        raise failures[0]
    scattered = []
    futures: dict[str, Future[Any]] = {}
    with client._lock:
        for k, value, payload in keyed:
            st = client.futures.get(k)
            if st is None or st.status != FINISHED:
                st = client.futures[k] = FutureState(k)
            small = payload.nbytes <= SCATTER_KEEP_LOCAL and not payload.buffers
            st.finish(type_name(value), sizeof(value), holders[k], payload if small else None)
            scattered.append(m.ScatteredKey(k, holders[k], st.nbytes, st.type_name))
            futures[k] = Future(k, client, inform=False)
        client._send(m.DataScattered(scattered))
    return futures


async def scatter_targets(client: Client, workers: Any, timeout: float | None) -> list[str]:
    if workers is not None:
        if isinstance(workers, str):
            workers = [workers]
        known = await client._request("scheduler_info")
        by_name = {info["name"]: a for a, info in known["workers"].items()}
        resolved = []
        for w in workers:
            if w in known["workers"]:
                resolved.append(w)
            elif w in by_name:
                resolved.append(by_name[w])
            else:
                resolved.extend(a for a, info in known["workers"].items() if info["host"] == w)
        if not resolved:
            raise ValueError(f"no workers match {workers!r}")
        return resolved
    if not client._workers:
        await client._request("wait_for_workers", n=1, timeout=timeout)
        info = await client._request("scheduler_info")
        client._workers = list(info["workers"])
    return list(client._workers)
