"""``shoal/client/core.py`` binds its heavy imports late (``load_runtime``):
the names the type checker sees and the names bound at run time must be the
same, or a method fails with NameError only when it first runs."""

from __future__ import annotations

import ast
import pathlib

CORE = pathlib.Path(__file__).resolve().parents[2] / "shoal" / "client" / "core.py"


def _imported(nodes: list[ast.stmt]) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def test_type_checking_imports_and_runtime_bindings_agree() -> None:
    tree = ast.parse(CORE.read_text())
    checking = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    typing_only = {"Callable", "Iterable", "Any", "TypeVar"}  # annotations, never used at run time
    seen_by_checker = _imported(checking.body) - typing_only
    bind = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_bind_runtime")
    declared = {name for n in bind.body if isinstance(n, ast.Global) for name in n.names}
    bound = _imported(bind.body)
    assert seen_by_checker - {"logging"} == bound - {"logging"}
    assert (bound - {"logging"}) | {"logger", "_runtime_loaded"} == declared
