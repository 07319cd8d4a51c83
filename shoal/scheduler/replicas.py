"""Where copies of results should go: the plans behind ``rebalance``,
``replicate`` and ``retire_workers``.  PURE: reads records, changes nothing.

The scheduler's cluster-control extension (``cluster_control.py``) carries a
plan out: it asks each recipient worker to fetch its copies straight from the
holders, the recipient announces them (``ReplicasAdded``), and for a move the
original is then dropped (``control_state.drop_replicas``).

Rules:
1. A worker's load is its managed bytes (``WorkerRecord.nbytes``: the results
   it holds as the scheduler knows them), not its process memory as dask
   measures it: plans are exact and repeatable.
2. Actors never move: an actor lives on the worker that made it.
3. Ties are broken by address and priority, so the same records always give
   the same plan.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from shoal.scheduler.records import MEMORY, TaskRecord, WorkerRecord

#: (from, to, task): a copy of ``task`` made on ``to``, then dropped on ``from``
Move = tuple[WorkerRecord, WorkerRecord, TaskRecord]
#: recipient -> {task: workers to fetch it from}
Copies = dict[WorkerRecord, dict[TaskRecord, list[WorkerRecord]]]


def is_actor(ts: TaskRecord) -> bool:
    return ts.restrictions is not None and ts.restrictions.actor


def movable(ts: TaskRecord) -> bool:
    """A result whose copies may be made or dropped."""
    return ts.state is MEMORY and not is_actor(ts)


def _by_load(load: dict[WorkerRecord, int]) -> list[WorkerRecord]:
    return sorted(load, key=lambda w: (load[w], w.address))


# ---------------------------------------------------------------------------
# rebalance
# ---------------------------------------------------------------------------


def plan_rebalance(workers: Collection[WorkerRecord], keys: Collection[TaskRecord] | None = None
                   ) -> list[Move]:
    """Moves that even out the bytes held by ``workers``, using only the
    results in ``keys`` (default: all).  Greedy: the most loaded worker gives
    its largest result that does not overshoot to the least loaded one that
    lacks it, until no such move is left.  "Does not overshoot": a result of
    ``b`` bytes moves only if ``b`` is at most half the gap between the two,
    so the giver stays at least as loaded as the taker and every move
    strictly narrows the spread; each result moves at most once."""
    load = {w: w.nbytes for w in sorted(workers, key=lambda w: w.address)}
    if len(load) < 2:
        return []
    allowed = None if keys is None else set(keys)
    candidates = {
        w: sorted((ts for ts in w.has_what
                   if movable(ts) and ts.nbytes > 0 and (allowed is None or ts in allowed)),
                  key=lambda ts: (-ts.nbytes, ts.priority))
        for w in load
    }
    moves: list[Move] = []
    while True:
        move = _next_move(load, candidates)
        if move is None:
            return moves
        giver, taker, ts = move
        candidates[giver].remove(ts)
        load[giver] -= ts.nbytes
        load[taker] += ts.nbytes
        moves.append(move)


def _next_move(load: dict[WorkerRecord, int], candidates: dict[WorkerRecord, list[TaskRecord]]
               ) -> Move | None:
    order = _by_load(load)
    for giver in reversed(order):
        for taker in order:
            gap = load[giver] - load[taker]
            if gap <= 0:
                break
            for ts in candidates[giver]:  # largest first
                if 2 * ts.nbytes <= gap and taker not in ts.who_has:
                    return giver, taker, ts
    return None


# ---------------------------------------------------------------------------
# replicate
# ---------------------------------------------------------------------------


def plan_trim(tasks: Iterable[TaskRecord], workers: Collection[WorkerRecord], n: int
              ) -> dict[WorkerRecord, list[TaskRecord]]:
    """Copies beyond ``n`` among ``workers`` to drop, from the most loaded
    holders first (``replicate`` sets the number of copies both ways)."""
    allowed = set(workers)
    drops: dict[WorkerRecord, list[TaskRecord]] = {}
    for ts in sorted(tasks, key=lambda ts: ts.priority):
        if not movable(ts):
            continue
        held = sorted((w for w in ts.who_has if w in allowed), key=lambda w: (-w.nbytes, w.address))
        for w in held[: max(0, len(held) - n)]:
            drops.setdefault(w, []).append(ts)
    return drops


def plan_copies(tasks: Iterable[TaskRecord], workers: Collection[WorkerRecord], n: int,
                branching_factor: int) -> Copies:
    """One round of copies towards ``n`` copies of each task among
    ``workers``: each copy that exists may seed at most ``branching_factor``
    new ones per round (a tree, so no holder is swamped), placed on the least
    loaded workers that lack it."""
    load = {w: w.nbytes for w in workers}
    copies: Copies = {}
    for ts in sorted(tasks, key=lambda ts: ts.priority):
        if not movable(ts) or not ts.who_has:
            continue
        missing = n - sum(1 for w in ts.who_has if w in load)
        if missing <= 0:
            continue
        count = min(missing, branching_factor * len(ts.who_has))
        for w in [w for w in _by_load(load) if w not in ts.who_has][:count]:
            copies.setdefault(w, {})[ts] = list(ts.who_has)
            load[w] += ts.nbytes
    return copies


# ---------------------------------------------------------------------------
# retire_workers
# ---------------------------------------------------------------------------


def unique_data(retiring: Collection[WorkerRecord]) -> list[TaskRecord]:
    """Results held by retiring workers and by no other worker: what must be
    copied away before they go."""
    leaving = set(retiring)
    found: dict[TaskRecord, None] = {}
    for w in sorted(leaving, key=lambda w: w.address):
        for ts in sorted(w.has_what, key=lambda ts: ts.priority):
            if ts.state is MEMORY and all(h in leaving for h in ts.who_has):
                found[ts] = None
    return list(found)


def plan_evacuation(tasks: Iterable[TaskRecord], recipients: Collection[WorkerRecord]) -> Copies:
    """A copy of each task on one recipient, each to the least loaded at the
    time (counting what this plan already sent there)."""
    load = {w: w.nbytes for w in recipients}
    copies: Copies = {}
    if not load:
        return copies
    for ts in tasks:
        target = min(load, key=lambda w: (load[w], w.address))
        copies.setdefault(target, {})[ts] = list(ts.who_has)
        load[target] += ts.nbytes
    return copies


def workers_to_close(workers: Collection[WorkerRecord], n: int | None = None,
                     target: int | None = None, minimum: int | None = None,
                     memory_ratio: float | None = None) -> list[WorkerRecord]:
    """Workers that could retire cheaply (dask's ``Scheduler.workers_to_close``
    without ``key=``): idle ones holding the least data first.  With ``n``
    (or ``target``, the number to keep) that many; otherwise as many idle
    ones as leave ``memory_ratio`` (default 2) times the data held in memory
    limits.  ``minimum`` workers always stay.  Workers running seceded tasks
    (which submit more work) never close."""
    total_workers = len(workers)
    if target is not None and n is None:
        n = total_workers - target
    if n is not None:
        n = max(0, n)
        target = total_workers - n
    if n is None and memory_ratio is None:
        memory_ratio = 2
    if not n and all(w.processing for w in workers):
        return []
    valid = [w for w in workers if not w.long_running]
    limit = sum(w.memory_limit for w in valid)
    total = sum(w.nbytes for w in valid)
    # idle ones holding the least data last: ``pop()`` takes them first
    idle = sorted(valid, key=lambda w: (not w.processing, -w.nbytes, w.address))
    chosen: list[WorkerRecord] = []
    remaining = total_workers
    while idle:
        w = idle.pop()
        if n is None and w.processing:
            break
        if minimum and remaining - 1 < minimum:
            break
        limit -= w.memory_limit
        if (n is not None and remaining - 1 >= (target or 0)) or (
            memory_ratio is not None and limit >= memory_ratio * total
        ):
            chosen.append(w)
            remaining -= 1
        else:
            break
    return chosen
