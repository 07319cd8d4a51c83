"""The asynchronous client: await futures, gather, as_completed."""

from __future__ import annotations

import asyncio

import pytest

from shoal import Client, as_completed, wait

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


@pytest.mark.parametrize("processes", [False, True])
def test_async_client(processes: bool) -> None:
    async def main() -> None:
        async with Client(asynchronous=True, n_workers=2, threads_per_worker=1,
                          processes=processes) as client:
            assert await client.submit(inc, 1) == 2
            future = client.submit(inc, 10)
            assert await future == 11
            futures = client.map(inc, range(10))
            assert await client.gather(futures) == list(range(1, 11))
            got = []
            async for f in as_completed(client.map(inc, range(5, 10))):
                got.append(await f)
            assert sorted(got) == list(range(6, 11))
            done, _ = await wait(futures)
            assert len(done) == 10
            [scattered] = await client.scatter([5])
            assert await client.submit(inc, scattered) == 6
            assert len((await client.scheduler_info())["workers"]) == 2

    asyncio.run(main())


def test_await_client_without_context_manager() -> None:
    async def main() -> None:
        client = await Client(asynchronous=True, n_workers=1, processes=False)
        try:
            assert await client.submit(inc, 2) == 3
        finally:
            await client.close()

    asyncio.run(main())
