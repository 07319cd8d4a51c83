"""graph_options: the placement keywords of compute/persist/get, resolved per key."""

from __future__ import annotations

import pytest

from shoal.client.graph_options import GraphOptions, TaskOptions, expand_target

dask = pytest.importorskip("dask")


def resolved(options: GraphOptions, keys: list, wanted: list | None = None,
             annotations: dict | None = None) -> dict:
    options.bind(set(keys), wanted if wanted is not None else keys, annotations)
    return {k: options.for_key(k) for k in keys}


def test_defaults_leave_tasks_unrestricted() -> None:
    assert resolved(GraphOptions(), ["a"])["a"] == TaskOptions(None, False, None, 0, 0, False)


def test_plain_values_apply_to_every_task() -> None:
    opts = GraphOptions(workers="w1", allow_other_workers=True, resources={"GPU": 1},
                        retries=2, priority=5)
    for o in resolved(opts, ["a", ("b", 0)]).values():
        assert o == TaskOptions(["w1"], True, {"GPU": 1.0}, 2, 5, False)


def test_callables_get_each_key() -> None:
    opts = GraphOptions(retries=lambda k: len(str(k)), priority=lambda k: 7 if k == "x" else 1)
    got = resolved(opts, ["x", "long-key"])
    assert (got["x"].retries, got["x"].priority) == (1, 7)
    assert (got["long-key"].retries, got["long-key"].priority) == (8, 1)


def test_mappings_name_keys_collections_and_tuples() -> None:
    d = dask.delayed(sum, pure=True)([1, 2])
    keys = [d.key, ("x", 0), ("x", 1), "y"]
    opts = GraphOptions(workers={d: "w1", (("x", 0), "y"): ["w2"]},
                        resources={("x", 1): {"GPU": 2}})
    got = resolved(opts, keys)
    assert got[d.key].workers == ["w1"]
    assert got[("x", 0)].workers == got["y"].workers == ["w2"]
    assert got[("x", 1)].workers is None and got[("x", 1)].resources == {"GPU": 2.0}
    assert expand_target(("x", 0), set(keys)) == [("x", 0)]  # a tuple key is itself


def test_precedence_mapping_then_annotation_then_keyword_then_context() -> None:
    opts = GraphOptions(retries={"a": 9}, priority=3, context={"priority": 1, "retries": 4})
    got = resolved(opts, ["a", "b", "c"], annotations={"priority": {"b": 8}})
    assert (got["a"].retries, got["a"].priority) == (9, 3)
    assert (got["b"].retries, got["b"].priority) == (4, 8)
    assert (got["c"].retries, got["c"].priority) == (4, 3)


def test_actors_forms() -> None:
    assert {k for k, o in resolved(GraphOptions(actors=True), ["a", "b"], ["b"]).items()
            if o.actor} == {"b"}
    assert {k for k, o in resolved(GraphOptions(actors=["a"]), ["a", "b"]).items()
            if o.actor} == {"a"}
    assert {k for k, o in resolved(GraphOptions(actors={"b": True, "a": False}),
                                   ["a", "b"]).items() if o.actor} == {"b"}


@pytest.mark.parametrize("kwargs, match", [
    ({"workers": 3}, "workers"),
    ({"allow_other_workers": "yes"}, "allow_other_workers"),
    ({"resources": ["GPU"]}, "resources"),
    ({"retries": -1}, "retries"),
    ({"priority": 1.5}, "priority"),
    ({"priority": "high"}, "priority"),
    ({"actors": 3.0}, "actors"),
])
def test_bad_values_are_type_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        GraphOptions(**kwargs)


def test_a_mapping_naming_a_missing_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a task of the graph"):
        resolved(GraphOptions(workers={"nope": "w1"}), ["a"])
