"""Work stealing with real processes: tasks placed next to their data on one
worker are taken by the idle one."""

from __future__ import annotations

import time

import pytest

from shoal import Client


def slow_len(data: bytes, i: int) -> int:
    time.sleep(0.3)
    return len(data) + i


@pytest.mark.timeout(60)
def test_idle_worker_steals_tasks_placed_next_to_their_data(client: Client) -> None:
    a, b = sorted(client.scheduler_info()["workers"])
    [data] = client.scatter([b"x" * 2_000_000], workers=[a])
    # the input is big: placement puts every task on its holder, a
    futures = client.map(slow_len, [data] * 8, range(8), pure=False)
    assert client.gather(futures) == [2_000_000 + i for i in range(8)]
    ran_on = {w for ws in client.who_has(futures).values() for w in ws}
    assert b in ran_on  # b was idle and took some
    info = client.sync(client._request, "stealing_info")
    assert info["enabled"] and info["stolen"] >= 1
