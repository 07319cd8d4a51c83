"""docs/api.md, the API reference, kept true by the suite.

* Every public name is in it: each name of ``shoal.__all__``, every public
  member of ``Client``, ``Future``, ``as_completed``, ``LocalCluster``, the
  coordination objects, actors, plugins and servers, and the functions of
  ``shoal.config``.  A new public name without a line in api.md fails here.
* Its examples run: each section (``## ...``) runs its ``python`` blocks
  and the example column of its tables, in the page's order, against the
  in-process cluster the page's first block starts; an example followed by
  ``→ `value``` must give that value.  An example marked *not run* carries
  its reason and must at least compile.
* What it says of signatures and links holds: the parameters a signature
  lists are the real ones, in order (``...`` stands for some left out), and
  links into docs/*.md point at headings that exist.
* Its table of dask names shoal lacks is ``GAPS`` of test_dask_parity.py.

The page's conventions are described at its top.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import inspect
import pathlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import shoal
from tests.unit.test_dask_parity import GAPS

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
API = DOCS / "api.md"

#: the header of the tables whose rows are entries (name, what, example, guide)
ENTRY_HEADER = ["name", "what", "example", "guide"]
#: the header of the table listing dask's names shoal does not have
GAPS_HEADER = ["dask name", "why shoal lacks it"]
NOT_RUN = "not run:"


@dataclass
class Entry:
    """One row of an entry table."""

    line: int
    names: list[str]  # every name the first cell documents
    signatures: list[str]  # the code spans of the first cell that have parameters
    example: str | None
    expected: str | None  # the value the example's last expression has
    raises: str | None  # the exception the example raises
    not_run: str | None  # why the example is not run here


@dataclass
class Block:
    """A ``python`` fenced block: run before the entries that follow it."""

    line: int
    code: str


@dataclass
class Section:
    title: str
    steps: list[Entry | Block] = field(default_factory=list)
    gap_names: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- parsing


def _cells(row: str) -> list[str]:
    """The cells of a table row (a ``\\|`` inside a cell is a ``|``)."""
    inner = row.strip()[1:-1] if row.strip().endswith("|") else row.strip()[1:]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _entry(line: int, cells: list[str]) -> Entry:
    first, _what, example_cell, _guide = cells
    spans = _spans(first)
    names = [s.split("(", 1)[0].strip() for s in spans]
    signatures = [s for s in spans if "(" in s]
    example = expected = raises = not_run = None
    if NOT_RUN in example_cell:
        not_run = example_cell.split(NOT_RUN, 1)[1].strip(" *_")
        example_cell = example_cell.split(NOT_RUN, 1)[0]
    code, _, result = example_cell.partition("→")
    found = _spans(code)
    if found:
        example = found[0]
    if result.strip():
        if result.strip().startswith("raises"):
            raises = _spans(result)[0]
        else:
            expected = _spans(result)[0]
    return Entry(line, names, signatures, example, expected, raises, not_run)


def parse(text: str) -> tuple[Block, list[Section]]:
    """The page's first ``python`` block (the setup of every section), and its sections."""
    setup: Block | None = None
    sections: list[Section] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            lang, start = line[3:].strip(), i
            i += 1
            body = []
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if lang == "python":
                block = Block(start + 1, "\n".join(body))
                if setup is None:
                    setup = block
                elif sections:
                    sections[-1].steps.append(block)
        elif line.startswith("## "):
            sections.append(Section(line[3:].strip()))
        elif line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: "):
            header = [c.lower() for c in _cells(line)]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = _cells(lines[i])
                if header == ENTRY_HEADER:
                    assert len(cells) == 4, f"api.md:{i + 1}: a row needs 4 cells: {lines[i]}"
                    sections[-1].steps.append(_entry(i + 1, cells))
                elif header == GAPS_HEADER:
                    sections[-1].gap_names.extend(_spans(cells[0])[:1])
                i += 1
            continue
        i += 1
    assert setup is not None, "api.md starts with a python block that makes the client"
    return setup, sections


SETUP, SECTIONS = parse(API.read_text())
ENTRIES = [s for sec in SECTIONS for s in sec.steps if isinstance(s, Entry)]
RUNNABLE = [sec for sec in SECTIONS if any(isinstance(s, Entry) and s.example for s in sec.steps)]


# ---------------------------------------------------------------------- running


VALUE = "__api_example_value__"


def _run(source: str, line: int, ns: dict[str, Any], loop: asyncio.AbstractEventLoop,
         value: bool = False) -> Any:
    """Run ``source`` in ``ns`` (top-level ``await`` allowed, on ``loop``);
    with ``value``, return what its last statement, an expression, gives."""
    tree = ast.parse(source, f"docs/api.md:{line}")
    if value:
        last = tree.body[-1]
        assert isinstance(last, ast.Expr), f"api.md:{line}: {source!r} does not end with an expression"
        tree.body[-1] = ast.Assign([ast.Name(VALUE, ast.Store())], last.value, lineno=last.lineno)
        ast.fix_missing_locations(tree)
    code = compile(tree, f"docs/api.md:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, ns)
    if code.co_flags & inspect.CO_COROUTINE:
        loop.run_until_complete(result)
    return ns.pop(VALUE, None)


def _check(entry: Entry, ns: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
    """Run an entry's example; it gives the value, or raises the exception, it says."""
    assert entry.example is not None
    at = f"api.md:{entry.line}: {entry.example}"
    if entry.raises is not None:
        error = _run(entry.raises, entry.line, ns, loop, value=True)
        with pytest.raises(error):
            _run(entry.example, entry.line, ns, loop)
        return
    got = _run(entry.example, entry.line, ns, loop, value=entry.expected is not None)
    if entry.expected is not None:
        want = _run(entry.expected, entry.line, ns, loop, value=True)
        assert got == want, f"{at} gave {got!r}, not {want!r}"


@pytest.fixture(scope="module")
def setup_namespace() -> Iterator[dict[str, Any]]:
    """What the page's first block makes: the client every example uses."""
    ns: dict[str, Any] = {"__name__": "api_examples"}
    loop = asyncio.new_event_loop()
    try:
        _run(SETUP.code, SETUP.line, ns, loop)
        yield ns
    finally:
        loop.close()
        if "client" in ns:
            ns["client"].close()
        if "tmp" in ns:
            shutil.rmtree(ns["tmp"], ignore_errors=True)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("section", RUNNABLE, ids=[s.title for s in RUNNABLE])
def test_the_examples_of_a_section_run(section: Section, setup_namespace: dict[str, Any]) -> None:
    ns = dict(setup_namespace)
    loop = asyncio.new_event_loop()
    try:
        # the client examples find by themselves (Client.current(), Queue(), cluster.get_client())
        with ns["client"].as_current():
            for step in section.steps:
                if isinstance(step, Block):
                    _run(step.code, step.line, ns, loop)
                elif step.example is not None and step.not_run is None:
                    _check(step, ns, loop)
    finally:
        loop.close()
        # the section's functions and namespace refer to each other: release its
        # futures now, in this thread, not whenever the garbage collector next runs
        # (a release landing inside a later submit of the same key leaves that
        # future pending for good: a race of the client, reported with this page)
        ns.clear()
        gc.collect()


def test_examples_not_run_say_why_and_compile() -> None:
    skipped = [e for e in ENTRIES if e.not_run is not None]
    assert skipped, "api.md marks the examples it cannot run (restarting a cluster, SSH...)"
    for e in skipped:
        assert e.not_run, f"api.md:{e.line}: say why the example is not run"
        if e.example is not None:
            compile(e.example, f"docs/api.md:{e.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


# ---------------------------------------------------------------------- coverage


def _public(obj: Any) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def required_names(ns: dict[str, Any]) -> set[str]:
    """Every name api.md must document, as it writes them (``Client.submit``)."""
    client = ns["client"]
    names = set(shoal.__all__)
    future = client.submit(sum, [1, 2])
    lock = shoal.Lock()
    instances: dict[str, Any] = {
        "Client": client, "Future": future, "as_completed": shoal.as_completed([future]),
        "LocalCluster": client.cluster, "Queue": shoal.Queue(), "Variable": shoal.Variable(),
        "Event": shoal.Event(), "Lock": lock, "Semaphore": shoal.Semaphore(),
        "MultiLock": shoal.MultiLock(["a"]),
    }
    classes = ["Actor", "ActorFuture", "BaseActorFuture", "Scheduler", "Worker", "Nanny",
               "WorkerPlugin", "SchedulerPlugin", "NannyPlugin", "PipInstall", "CondaInstall",
               "InstallPlugin", "Environ", "UploadFile", "UploadDirectory"]
    members = {owner: _public(obj) for owner, obj in instances.items()}
    members.update({owner: _public(getattr(shoal, owner)) for owner in classes})
    members["Status"] = {s.name for s in shoal.Status}
    members["config"] = {n for n, f in vars(shoal.config).items()
                         if not n.startswith("_") and inspect.isfunction(f)
                         and f.__module__ == "shoal.config"}
    for owner, public in members.items():
        names |= {f"{owner}.{m}" for m in public}
    return names


def test_every_public_name_is_in_the_api_reference(setup_namespace: dict[str, Any]) -> None:
    documented = {n for e in ENTRIES for n in e.names}
    missing = sorted(required_names(setup_namespace) - documented)
    assert not missing, f"public names with no entry in docs/api.md: {missing}"


def test_every_entry_has_an_example() -> None:
    bare = [e.line for e in ENTRIES if e.example is None and e.not_run is None]
    assert not bare, f"api.md rows with no example (lines {bare})"


def _resolve(name: str) -> Any:
    obj: Any = shoal
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _listed_params(signature: str) -> list[str]:
    inner = signature[signature.index("(") + 1 : signature.rindex(")")]
    names = []
    for part in re.split(r",(?![^\[({]*[\])}])", inner):
        part = part.strip()
        if part in ("", "/", "*", "..."):
            continue
        names.append(part.split("=", 1)[0].lstrip("*").strip())
    return names


def test_signatures_name_the_real_parameters_in_order() -> None:
    checked = 0
    for e in ENTRIES:
        for sig in e.signatures:
            name = sig.split("(", 1)[0].strip()
            if " " in name:  # a call written as code (await Scheduler(...)), not a signature
                continue
            try:
                params = [p.name for p in inspect.signature(_resolve(name)).parameters.values()
                          if p.name != "self"]
            except (AttributeError, TypeError, ValueError):
                continue  # an instance attribute, or a callable without a signature
            listed = _listed_params(sig)
            at = f"api.md:{e.line}: {sig}"
            assert [p for p in params if p in listed] == listed, f"{at}: real parameters are {params}"
            if "..." not in sig:
                assert listed == params, f"{at}: real parameters are {params} (use ... to leave some out)"
            checked += 1
    assert checked > 100


def _anchors(path: pathlib.Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    anchors = set()
    in_fence = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_links_into_the_docs_point_at_headings() -> None:
    text = API.read_text()
    links = re.findall(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)", text)
    assert len(links) > 50
    for target, anchor in links:
        path = DOCS / target if target else API
        assert path.exists(), f"api.md links to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(path), f"api.md links to {target}#{anchor}: no such heading"


def test_the_names_dask_has_and_shoal_lacks_are_the_parity_tests_gaps() -> None:
    listed = [n for sec in SECTIONS for n in sec.gap_names]
    assert sorted(listed) == sorted(GAPS), "docs/api.md's table of missing dask names is GAPS"
