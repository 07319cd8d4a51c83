"""Published datasets, shared between clients and kept while published."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shoal import Client, LocalCluster


def inc(x: int) -> int:
    return x + 1


def test_publish_in_one_client_get_in_another(cluster: LocalCluster, client: Client) -> None:
    futures = client.map(inc, range(5))
    client.publish_dataset(numbers=futures, label="a plain value")
    assert client.list_datasets() == ["label", "numbers"]
    with Client(cluster) as other:
        got = other.get_dataset("numbers")
        assert [f.client for f in got] == [other] * 5
        assert other.gather(got) == [1, 2, 3, 4, 5]
        assert other.get_dataset("label") == "a plain value"
    client.unpublish_dataset("numbers")
    client.unpublish_dataset("label")
    assert client.list_datasets() == []


def test_results_outlive_the_publishing_client(cluster: LocalCluster, client: Client) -> None:
    with Client(cluster) as publisher:
        futures = publisher.map(inc, range(3), pure=False)
        publisher.publish_dataset(futures, name="kept")
        keys = [f.key for f in futures]
        assert publisher.gather(futures) == [1, 2, 3]
    got = client.get_dataset("kept")
    assert [f.key for f in got] == keys
    assert client.gather(got) == [1, 2, 3]
    assert set(client.who_has(got)) == set(keys)
    client.unpublish_dataset("kept")


def test_unpublished_results_are_freed_when_no_future_holds_them(
        client: Client, forgotten: Callable[..., bool]) -> None:
    futures = client.map(inc, range(3), pure=False)
    keys = [f.key for f in futures]
    client.publish_dataset(futures, name="temporary")
    del futures
    assert client.gather(client.get_dataset("temporary")) == [1, 2, 3]
    assert set(client.who_has(keys)) == set(keys)  # still held by the dataset
    client.unpublish_dataset("temporary")
    assert forgotten(keys)


def test_names_override_and_missing(client: Client) -> None:
    client.publish_dataset(1, name="x")
    with pytest.raises(KeyError, match="already exists"):
        client.publish_dataset(2, name="x")
    client.publish_dataset(2, name="x", override=True)
    assert client.get_dataset("x") == 2
    client.unpublish_dataset("x")
    with pytest.raises(KeyError, match="'x' not found"):
        client.get_dataset("x")
    assert client.get_dataset("x", default=None) is None
    with pytest.raises(KeyError, match="not found"):
        client.unpublish_dataset("x")
    with pytest.raises(ValueError, match="name"):
        client.publish_dataset(1, 2)
    with pytest.raises(ValueError, match="at least one"):
        client.publish_dataset()


def test_the_datasets_mapping(client: Client) -> None:
    client.datasets["m"] = {"a": 1}
    assert "m" in client.datasets and list(client.datasets) == ["m"] and len(client.datasets) == 1
    assert client.datasets["m"] == {"a": 1}
    del client.datasets["m"]
    assert "m" not in client.datasets
    with pytest.raises(KeyError):
        client.datasets["m"]


def test_a_persisted_dask_collection_as_a_dataset(cluster: LocalCluster, client: Client) -> None:
    bag = pytest.importorskip("dask.bag")
    persisted = client.persist(bag.from_sequence(range(10), npartitions=2).map(inc))
    client.publish_dataset(persisted, name="bag")
    with Client(cluster) as other:
        assert sorted(other.get_dataset("bag").compute()) == list(range(1, 11))
    client.unpublish_dataset("bag")


