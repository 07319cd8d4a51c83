"""All-or-nothing acquisition of several named locks (``shoal.MultiLock``),
kept by the scheduler.  Pure: no I/O, no clock; the waiting is done by
``locks.py``.

Each lock name has a queue of requests; the request at the head of a queue
holds that lock.  A request for ``needed`` of its ``names`` is *granted* when
it holds that many.  Rules:

1. A request that can take ``needed`` free locks at once takes them and
   queues nowhere else.  Otherwise it joins the queue of every one of its
   names, all in the same step, and holds those where it is first.
2. When a request ends (released, given up at its timeout, or its holder's
   connection went), it leaves every queue; the next request in each queue it
   headed holds that lock.  A request granted this way leaves the queues of
   the locks it does not hold (it does not need them).

Why waiting MultiLocks cannot deadlock each other: every queue is ordered by
arrival (rule 1 joins all queues in one step), so whatever waits on a
request arrived before it.  The oldest request still waiting is therefore
behind granted requests only, and is granted once they are released; then
the next oldest, and so on.  (A granted request that is never released
blocks the others, as any lock does; its holder's death releases it.)
"""

from __future__ import annotations

from collections import deque


class MultiLockRequest:
    __slots__ = ("granted", "held", "holder", "names", "needed")

    def __init__(self, holder: str, names: list[str], needed: int) -> None:
        self.holder = holder
        self.names = names
        self.needed = needed
        self.held: set[str] = set()
        self.granted = False

    def __repr__(self) -> str:
        return f"<MultiLockRequest {len(self.held)}/{self.needed} of {self.names}>"


class MultiLocks:
    def __init__(self) -> None:
        self.queues: dict[str, deque[str]] = {}  # lock name -> request ids, holder first
        self.requests: dict[str, MultiLockRequest] = {}

    def request(self, request_id: str, holder: str, names: list[str], num_locks: int | None) -> bool:
        """Ask for ``num_locks`` (default: all) of ``names``; True if granted now."""
        names = _check(request_id, names, num_locks, self.requests)
        needed = len(names) if num_locks is None else num_locks
        req = self.requests[request_id] = MultiLockRequest(holder, names, needed)
        free = [n for n in names if not self.queues.get(n)]
        if len(free) >= needed:
            for name in free[:needed]:
                self.queues[name] = deque([request_id])
                req.held.add(name)
            req.granted = True
            return True
        for name in names:
            queue = self.queues.setdefault(name, deque())
            queue.append(request_id)
            if len(queue) == 1:
                req.held.add(name)
        return False

    def granted(self, request_id: str) -> bool:
        req = self.requests.get(request_id)
        return req is not None and req.granted

    def release(self, request_id: str) -> list[str]:
        """End a request, granted or waiting; the ids of requests granted as
        a result.  An unknown id ends nothing."""
        req = self.requests.pop(request_id, None)
        if req is None:
            return []
        newly: list[str] = []
        for name in req.names:
            queue = self.queues.get(name)
            if queue is None or request_id not in queue:
                continue
            was_head = queue[0] == request_id
            queue.remove(request_id)
            if not queue:
                del self.queues[name]
            elif was_head:
                self._now_holds(queue[0], name, newly)
        return newly

    def holder_left(self, holder: str) -> list[str]:
        """End every request of ``holder``; the ids of requests granted as a result."""
        newly: list[str] = []
        for request_id in [r for r, req in self.requests.items() if req.holder == holder]:
            newly.extend(self.release(request_id))
        return [r for r in newly if r in self.requests]

    def _now_holds(self, request_id: str, name: str, newly: list[str]) -> None:
        req = self.requests[request_id]
        req.held.add(name)
        if req.granted or len(req.held) < req.needed:
            return
        req.granted = True
        newly.append(request_id)
        for other in req.names:  # rule 2: leave the queues it does not head
            if other not in req.held:
                queue = self.queues[other]
                queue.remove(request_id)  # never the head: it does not hold `other`
                if not queue:
                    del self.queues[other]


def _check(request_id: str, names: object, num_locks: int | None,
           requests: dict[str, MultiLockRequest]) -> list[str]:
    """The distinct names, in order; ``ValueError`` for a request that cannot be met."""
    if request_id in requests:
        raise ValueError(f"MultiLock request {request_id!r} is already acquired or waiting; "
                         "release it first")
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"MultiLock names must be a list of str, got {names!r}")
    unique = list(dict.fromkeys(names))
    if not unique:
        raise ValueError("a MultiLock needs at least one lock name")
    if num_locks is not None and (isinstance(num_locks, bool) or not isinstance(num_locks, int)
                                  or not 1 <= num_locks <= len(unique)):
        raise ValueError(f"num_locks must be between 1 and {len(unique)} (the number of distinct "
                         f"names), got {num_locks!r}")
    return unique
