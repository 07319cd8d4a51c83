"""Work stealing with real processes: tasks placed next to their data on one
worker are taken by the idle one."""

from __future__ import annotations

import asyncio
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


@pytest.mark.timeout(60)
def test_active_memory_manager_drops_superfluous_copies(client: Client) -> None:
    [x] = client.scatter([b"y" * 100_000])
    client.replicate([x], n=2)
    assert len(client.who_has([x])[x.key]) == 2
    assert client.amm.running() is False
    assert client.amm.run_once() is None
    assert len(client.who_has([x])[x.key]) == 1
    assert x.result() == b"y" * 100_000
    client.amm.start()
    try:
        assert client.amm.running() is True
    finally:
        client.amm.stop()
    assert client.amm.running() is False
    with pytest.raises(ValueError, match="no method"):
        client.amm._run("nonsense")


@pytest.mark.timeout(60)
def test_amm_on_an_asynchronous_client(cluster: object) -> None:
    async def main() -> None:
        async with Client(cluster, asynchronous=True) as c:
            assert await c.amm.running() is False
            assert await c.amm.run_once() is None

    asyncio.run(main())
