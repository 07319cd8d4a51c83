"""Seed 003: the "Dask Futures" overview document
(/work/shared/seeds/003_b4dfe8683e87f52f.txt): every code block, with
``from dask.distributed`` -> ``from shoal``.  The document's placeholders
(expensive_function, database.write, process_item, load_data, update_function,
...) are replaced by small real functions; sizes are reduced.
"""

from __future__ import annotations

import gc
import json
import os
import time
import traceback
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from shoal import Client, Future, as_completed, fire_and_forget, wait

pytestmark = pytest.mark.timeout(60)

SEED = "003_b4dfe8683e87f52f.txt"


def add(x, y):
    return x + y


def square(x):
    return x**2


def expensive_function(arg):
    time.sleep(0.2)
    return arg * 10


def might_fail(x):
    if x < 0:
        raise ValueError("Negative value")
    return x**2


# ------------------------------------------------------------ "Setting Up Client"


def test_setting_up_client_local_cluster() -> None:
    # seed 003, "Setting Up Client": client = Client()   # Local cluster (on single machine)
    client = Client()
    try:
        assert client.cluster.processes is True
        workers = client.scheduler_info()["workers"]
        assert len(workers) >= 1
        assert client.submit(add, 1, 2).result(timeout=10) == 3
    finally:
        client.close()
    assert client.status == "closed"


def test_setting_up_client_specify_resources() -> None:
    # seed 003, "Setting Up Client": Client(n_workers=4, threads_per_worker=2)  (2 here)
    client = Client(n_workers=2, threads_per_worker=2)
    try:
        assert sorted(client.nthreads().values()) == [2, 2]
        futures = client.map(add, range(8), range(8))
        assert client.gather(futures) == [2 * i for i in range(8)]
    finally:
        client.close()


def test_setting_up_client_connect_to_existing_cluster(cluster) -> None:  # type: ignore[no-untyped-def]
    # seed 003, "Setting Up Client": client = Client('scheduler-address:8786')
    # (an address without "tcp://", as in the document)
    address = cluster.scheduler_address.removeprefix("tcp://")
    client = Client(address)
    try:
        assert client.status == "running"
        assert client.submit(add, 1, 2).result(timeout=10) == 3
    finally:
        client.close()
    # closing a client that connected to a cluster leaves the cluster running
    with Client(cluster.scheduler_address) as other:
        assert other.submit(add, 2, 3).result(timeout=10) == 5


def _where() -> int:
    return os.getpid()


def test_setting_up_several_clients_then_closing_them(cluster) -> None:  # type: ignore[no-untyped-def]
    # seed 003, "Setting Up Client": the document makes one client after the other
    # (client = Client(); client = Client(...); client = Client('scheduler-address:8786')).
    # With dask.distributed, dask.compute() runs on whichever client is still open, and
    # fails clearly once none is.
    import dask

    saved = dask.config.get("scheduler", None)
    where = dask.delayed(_where)
    first = Client(cluster.scheduler_address)
    second = Client(cluster.scheduler_address)
    try:
        assert where().compute() != os.getpid()  # on the cluster
        first.close()
        assert second.status == "running"
        assert where().compute() != os.getpid(), "the open client is not used any more"
        second.close()
        scheduler = dask.config.get("scheduler", None)
        owner = getattr(scheduler, "__self__", None)
        assert not (isinstance(owner, Client) and owner.status == "closed"), (
            "dask.compute() would now go to a closed client (and hang)"
        )
    finally:
        first.close()
        second.close()
        dask.config.set(scheduler=saved)
        if saved is None:
            dask.config.config.pop("scheduler", None)


# ------------------------------------------------------------- "Submitting Tasks"


def test_basic_submit(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    # seed 003, "Basic Submit"
    future = client.submit(add, 1, 2)
    # Get result
    result = future.result()  # Blocks until complete
    print(result)  # 3
    assert result == 3
    assert capsys.readouterr().out == "3\n"


def test_multiple_tasks(client: Client) -> None:
    # seed 003, "Multiple Tasks"
    futures = []
    for i in range(10):
        future = client.submit(add, i, i)
        futures.append(future)
    # Gather results
    results = client.gather(futures)  # Efficient parallel gathering
    assert results == [2 * i for i in range(10)]


def test_map_over_inputs(client: Client) -> None:
    # seed 003, "Map Over Inputs"
    futures = client.map(square, range(100))
    results = client.gather(futures)
    assert results == [i**2 for i in range(100)]
    assert len({f.key for f in futures}) == 100


# ----------------------------------------------------------- "Working with Futures"


def test_check_status(client: Client) -> None:
    # seed 003, "Check Status"
    arg = 4
    future = client.submit(expensive_function, arg)
    # Check if complete
    assert future.done() is False
    # Check status: 'pending', 'running', 'finished', or 'error'
    assert future.status in ("pending", "running")
    wait(future)
    assert future.done() is True
    assert future.status == "finished"


def test_non_blocking_result_retrieval_and_callbacks(client: Client) -> None:
    # seed 003, "Non-Blocking Result Retrieval"
    future = client.submit(expensive_function, 5)
    printed: list[str] = []
    # Non-blocking check
    if future.done():
        result = future.result()
    else:
        printed.append("Still computing...")
    assert printed == ["Still computing..."]

    # Or use callbacks
    import threading

    called = threading.Event()

    def handle_result(future):
        printed.append(f"Result: {future.result()}")
        called.set()

    future.add_done_callback(handle_result)
    assert called.wait(10), "done callback never ran"
    assert printed == ["Still computing...", "Result: 50"]

    # a callback added to a finished future runs too
    again = threading.Event()
    future.add_done_callback(lambda f: again.set() if f.result() == 50 else None)
    assert again.wait(10)
    result = future.result()
    assert result == 50


def test_error_handling(client: Client) -> None:
    # seed 003, "Error Handling"
    future = client.submit(might_fail, -5)
    caught = []
    try:
        result = future.result()
    except ValueError as e:
        caught.append(f"Task failed: {e}")
    assert caught == ["Task failed: Negative value"]
    assert future.status == "error"
    assert "result" not in locals()


# ------------------------------------------------------------ "Task Dependencies"


def test_automatic_dependency_tracking(client: Client) -> None:
    # seed 003, "Automatic Dependency Tracking"
    future1 = client.submit(add, 1, 2)
    future2 = client.submit(add, future1, 10)  # Depends on future1
    future3 = client.submit(add, future2, 100)  # Depends on future2
    result = future3.result()  # 113
    assert result == 113
    assert (future1.result(), future2.result()) == (3, 13)


def func1(x):
    return x + 1


def func2(y):
    return y * 2


def func3(a, b):
    return (a, b)


def test_complex_dependencies(client: Client) -> None:
    # seed 003, "Complex Dependencies"
    x, y = 10, 20
    a = client.submit(func1, x)
    b = client.submit(func2, y)
    c = client.submit(func3, a, b)  # Depends on both a and b
    result = c.result()
    assert result == (11, 40)


# ------------------------------------------------------ "Data Movement Optimization"


def process(data, i):
    return int(data[i::100].sum())


def test_scatter_data(client: Client) -> None:
    # seed 003, "Scatter Data"
    # (an array: client.scatter of a *list* scatters each element, as in dask)
    big_data = np.arange(100_000)
    large_dataset = client.scatter(big_data)  # Returns future
    assert isinstance(large_dataset, Future)
    assert large_dataset.status == "finished"
    assert large_dataset.type is np.ndarray
    assert len(client.who_has([large_dataset])[large_dataset.key]) == 1  # one copy
    # Use scattered data in multiple tasks
    futures = [client.submit(process, large_dataset, i) for i in range(100)]
    # Each task uses the same scattered data without re-transfer
    results = client.gather(futures)
    assert results == [int(big_data[i::100].sum()) for i in range(100)]
    assert sum(results) == big_data.sum()
    assert (large_dataset.result() == big_data).all()


def test_efficient_gathering(client: Client) -> None:
    # seed 003, "Efficient Gathering"
    futures = client.map(square, range(50))
    # Better: Gather all at once (parallel)
    results = client.gather(futures)
    # Worse: Sequential result retrieval
    assert [f.result() for f in futures] == results == [i**2 for i in range(50)]


# -------------------------------------------------------------- "Fire-and-Forget"


class FileDatabase:
    """Stand-in for the document's ``database``: one JSON line per write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, data) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(data) + "\n")

    def read(self) -> list:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]


def test_fire_and_forget(client: Client, tmp_path: Path, wait_until, forgotten) -> None:
    # seed 003, "Fire-and-Forget"
    database = FileDatabase(tmp_path / "db.jsonl")

    def log_to_database(data):
        time.sleep(0.2)  # still running when the future is dropped below
        # Write to database, no return value needed
        database.write(data)

    data = {"event": "fired", "n": 1}
    # Submit without keeping reference
    future = client.submit(log_to_database, data)
    fire_and_forget(future)
    key = future.key
    del future
    gc.collect()
    # Dask won't abandon this computation even without active future reference
    assert wait_until(lambda: database.read() == [data], timeout=10), database.read()
    # and once done, the scheduler forgets it
    assert forgotten([key])


def sleep_for(t):
    time.sleep(t)
    return t


def test_fire_and_forget_keeps_queued_work_that_would_be_dropped(
    client: Client, tmp_path: Path, wait_until
) -> None:
    # seed 003, "Fire-and-Forget", with the workers busy so the task waits in a queue:
    # dropped without fire_and_forget it never runs; with it, it does.
    database = FileDatabase(tmp_path / "db.jsonl")

    def log_to_database(data):
        database.write(data)

    busy = client.map(sleep_for, [0.4, 0.4], pure=False)  # both single-thread workers
    time.sleep(0.1)
    dropped = client.submit(log_to_database, {"n": "dropped"})
    del dropped
    gc.collect()
    future = client.submit(log_to_database, {"n": "kept"})
    fire_and_forget(future)
    del future
    gc.collect()
    wait(busy)
    assert wait_until(lambda: database.read() == [{"n": "kept"}], timeout=10), database.read()
    time.sleep(0.2)
    assert database.read() == [{"n": "kept"}]


# ------------------------------------------------------------ "Memory Management"


def expensive_calc(data):
    return [v * 2 for v in data]


def process1(r):
    return sum(r)


def process2(r):
    return max(r)


def test_memory_management_keep_references(client: Client, released) -> None:
    # seed 003, "Memory Management" / "Keep References"
    data = list(range(10))
    # Keep reference to prevent deletion
    important_result = client.submit(expensive_calc, data)
    # Use result multiple times
    future1 = client.submit(process1, important_result)
    future2 = client.submit(process2, important_result)
    assert (future1.result(), future2.result()) == (90, 18)
    # the kept result is still there for more work
    assert client.who_has([important_result])[important_result.key]
    assert client.submit(len, important_result).result() == 10
    # "When a future is garbage collected by your local Python session, Dask will
    # feel free to delete that data"
    key = important_result.key
    del important_result
    # (the scheduler keeps a "released" record while future1/future2 point at it)
    assert released([key]), (client.task_states(), client.has_what())
    assert (future1.result(), future2.result()) == (90, 18)


def use_result(r):
    return len(r)


def test_best_practice_3_manage_memory_with_references(client: Client, released, forgotten) -> None:
    # seed 003, "Best Practices", 3. Manage Memory with References
    data = list(range(5))
    # Keep important futures
    important = client.submit(expensive_calc, data)
    # Use multiple times
    f1 = client.submit(use_result, important)
    f2 = client.submit(use_result, important)
    assert client.gather([f1, f2]) == [5, 5]
    key = important.key
    # Clean up when done
    del important
    assert released([key]), (client.task_states(), client.has_what())
    # the dependents keep their own results
    assert client.gather([f1, f2]) == [5, 5]
    # and once they go too, the scheduler forgets everything
    keys = [key, f1.key, f2.key]
    del f1, f2
    assert forgotten(keys), client.task_states()


# ----------------------------------------------------- "Advanced Coordination"


def test_distributed_primitives_queue(own_client) -> None:
    # seed 003, "Queues"
    from shoal import Queue  # type: ignore[attr-defined]

    client = own_client()
    queue = Queue()

    def producer():
        for i in range(10):
            queue.put(i)

    def consumer():
        results = []
        for _ in range(10):
            results.append(queue.get())
        return results

    producer_future = client.submit(producer)  # document: not kept (then it may never run)
    result_future = client.submit(consumer)
    results = result_future.result(timeout=10)
    assert results == list(range(10))
    assert producer_future.result(timeout=10) is None


def test_distributed_primitives_lock(own_client, tmp_path: Path) -> None:
    # seed 003, "Locks" (shared_resource: a counter file)
    from shoal import Lock  # type: ignore[attr-defined]

    client = own_client()
    lock = Lock()
    counter = tmp_path / "counter"
    counter.write_text("0")

    def critical_section():
        with lock:
            # Only one task executes this at a time
            n = int(counter.read_text())
            time.sleep(0.01)
            counter.write_text(str(n + 1))

    wait(client.map(lambda _: critical_section(), range(10)), timeout=20)
    assert counter.read_text() == "10"


def test_distributed_primitives_event(own_client) -> None:
    # seed 003, "Events" (5 s sleep -> 0.05 s)
    from shoal import Event  # type: ignore[attr-defined]

    client = own_client()
    event = Event()

    def waiter():
        event.wait()  # Blocks until event is set
        return "Event occurred"

    def setter():
        time.sleep(0.05)
        event.set()

    wait_future = client.submit(waiter)
    set_future = client.submit(setter)
    result = wait_future.result(timeout=10)
    assert result == "Event occurred"
    assert set_future.result(timeout=10) is None


def test_distributed_primitives_variable(own_client) -> None:
    # seed 003, "Variables"
    from shoal import Variable  # type: ignore[attr-defined]

    client = own_client()
    var = Variable("my-var")
    var.set(42)

    def reader():
        return var.get()

    future = client.submit(reader)
    assert future.result(timeout=10) == 42


# -------------------------------------------------------------------- "Actors"


class Counter:
    def __init__(self):
        self.count = 0

    def increment(self):
        self.count += 1
        return self.count

    def get_count(self):
        return self.count


def test_actors_counter(client: Client) -> None:
    # seed 003, "Creating Actors"
    # Create actor on worker
    counter = client.submit(Counter, actor=True).result(timeout=10)
    assert not isinstance(counter, Counter)  # a proxy: the instance stays on its worker
    # Call methods
    future1 = counter.increment()
    future2 = counter.increment()
    result = counter.get_count().result()
    assert result == 2
    assert (future1.result(), future2.result()) == (1, 2)


# ------------------------------------------------------------ "Common Patterns"


def expensive_computation(item):
    return item * item + 1


def process_item(item):
    # Independent computation
    return expensive_computation(item)


def test_embarrassingly_parallel_tasks(client: Client) -> None:
    # seed 003, "Embarrassingly Parallel Tasks" (1000 items -> 300)
    items = range(300)
    futures = client.map(process_item, items)
    results = client.gather(futures)
    assert results == [i * i + 1 for i in range(300)]


def test_dynamic_task_submission(own_client) -> None:
    # seed 003, "Dynamic Task Submission".  The document's function uses `client` inside
    # a task; with dask that is the worker's client, and a task that waits on the tasks it
    # submitted must leave the thread pool meanwhile (or with one thread per worker
    # every thread ends up waiting): worker_client() does both.
    from shoal import worker_client

    def process(data):
        return sum(data)

    def split(data):
        return data[: len(data) // 2], data[len(data) // 2 :]

    def combine(a, b):
        return a + b

    def recursive_compute(data, depth):
        if depth == 0:
            return process(data)

        with worker_client() as client:
            # Split and recurse
            left, right = split(data)
            left_future = client.submit(recursive_compute, left, depth - 1)
            right_future = client.submit(recursive_compute, right, depth - 1)

            # Combine results
            return combine(left_future.result(), right_future.result())

    client = own_client()
    initial_data = list(range(64))
    # Start computation (document: depth 5; 3 here: 15 tasks)
    result_future = client.submit(recursive_compute, initial_data, 3)
    result = result_future.result(timeout=2)
    assert result == sum(range(64))


def run_simulation(param1, param2, param3):
    # Run simulation with parameters
    return param1 * 100 + param2 * 10 + param3


def test_parameter_sweep_with_as_completed(client: Client) -> None:
    # seed 003, "Parameter Sweep" (range(10) ** 3 -> range(4) ** 3)
    params = product(range(4), range(4), range(4))
    futures = [client.submit(run_simulation, p1, p2, p3) for p1, p2, p3 in params]
    processed = []

    def process_result(result):
        processed.append(result)

    for future in as_completed(futures):
        assert future.done()
        result = future.result()
        process_result(result)

    assert sorted(processed) == sorted(a * 100 + b * 10 + c for a, b, c in product(range(4), repeat=3))


def test_pipeline_with_dependencies(client: Client, tmp_path: Path) -> None:
    # seed 003, "Pipeline with Dependencies"
    files = []
    for i in range(4):
        p = tmp_path / f"part-{i}.txt"
        p.write_text("\n".join(str(i * 10 + j) for j in range(5)))
        files.append(str(p))

    def load_data(file):
        return [int(v) for v in Path(file).read_text().split()]

    def process(values):
        return [v + 1 for v in values]

    def aggregate(parts):
        return sum(sum(p) for p in parts)

    # Stage 1: Load data
    load_futures = [client.submit(load_data, file) for file in files]
    # Stage 2: Process (depends on stage 1)
    process_futures = [client.submit(process, f) for f in load_futures]
    # Stage 3: Aggregate (depends on stage 2)
    agg_future = client.submit(aggregate, process_futures)
    # Get final result
    result = agg_future.result()
    assert result == sum(i * 10 + j + 1 for i in range(4) for j in range(5))


def update_function(state):
    return {"x": state["x"] / 2, "steps": state["steps"] + 1}


def check_convergence(state):
    return state["x"] < 1e-3


def test_iterative_algorithm(client: Client) -> None:
    # seed 003, "Iterative Algorithm"
    initial_state = {"x": 1000.0, "steps": 0}
    num_iterations = 100
    # Initialize
    state = client.scatter(initial_state)
    # Iterate
    for iteration in range(num_iterations):  # noqa: B007 (used after the loop)
        # Compute update based on current state
        state = client.submit(update_function, state)
        # Check convergence
        converged = client.submit(check_convergence, state)
        if converged.result():
            break
    # Get final state
    final_state = state.result()
    assert iteration == 19
    assert final_state == {"x": 1000.0 / 2**20, "steps": 20}


# --------------------------------------------------------------- "Best Practices"


def test_best_practice_1_pre_scatter_large_data(client: Client) -> None:
    # seed 003, "Best Practices", 1. Pre-scatter Large Data
    big_dataset = np.arange(200_000, dtype="float64")

    def process(data, i):
        return float(data[i::10].sum())

    # Upload once, use many times
    large_data = client.scatter(big_dataset)
    assert large_data.type is np.ndarray
    futures = [client.submit(process, large_data, i) for i in range(10)]
    assert client.gather(futures) == [float(big_dataset[i::10].sum()) for i in range(10)]


def test_best_practice_2_gather_for_bulk_retrieval(client: Client) -> None:
    # seed 003, "Best Practices", 2. Use Gather for Bulk Retrieval
    futures = client.map(square, range(20))
    # Efficient: Parallel gathering
    results = client.gather(futures)
    # Inefficient: Sequential
    assert results == [f.result() for f in futures] == [i * i for i in range(20)]


def test_best_practice_4_handle_errors(client: Client) -> None:
    # seed 003, "Best Practices", 4. Handle Errors Appropriately
    inputs = [-2, -1, 0, 1, 2, 3]
    futures = client.map(might_fail, inputs)
    # Check for errors
    results = []
    errors = []
    for future in as_completed(futures):
        try:
            results.append(future.result())
        except Exception as e:
            errors.append(e)
    assert sorted(results) == [0, 1, 4, 9]
    assert len(errors) == 2
    assert all(type(e) is ValueError and str(e) == "Negative value" for e in errors)


def test_best_practice_5_as_completed_progressive_processing(client: Client) -> None:
    # seed 003, "Best Practices", 5. Use as_completed for Progressive Processing
    items = [0.05, 0.01, 0.2, 0.0]
    futures = client.map(sleep_for, items)
    handled = []

    def handle_result(result):
        handled.append(result)

    # Process results as they arrive
    for future in as_completed(futures):
        result = future.result()
        handle_result(result)
    assert sorted(handled) == sorted(items)
    assert handled[-1] == 0.2  # the slowest one arrives last


# ------------------------------------------------------------- "Debugging Tips"


def test_check_task_status_and_traceback(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    # seed 003, "Check Task Status"
    future = client.submit(might_fail, -1)
    wait(future)
    # Inspect future
    print(future.status)
    print(future.done())
    assert capsys.readouterr().out == "error\nTrue\n"
    # Get traceback on error
    try:
        future.result()
    except Exception:
        print(future.traceback())
    assert capsys.readouterr().out.startswith("<traceback object")
    frames = traceback.extract_tb(future.traceback())
    assert any(fr.name == "might_fail" and "raise ValueError" in (fr.line or "") for fr in frames)


def test_profile_tasks(client: Client, tmp_path: Path) -> None:
    # seed 003, "Profile Tasks"
    wait(client.map(square, range(10)))
    # Get performance data
    client.profile(filename=str(tmp_path / "profile.html"))
    assert (tmp_path / "profile.html").exists()
