"""The templates of shoal's HTML reprs (what a notebook shows for a
``Client``, a ``LocalCluster``, the scheduler and its workers), as
dask.distributed's ``distributed.widgets`` registers the templates of its
own.

    from shoal import widgets
    widgets.render("client.html", ...)          # what Client._repr_html_ uses

dask's templates are Jinja2 files added to ``dask.widgets``' search path;
shoal's are plain HTML with ``$name`` fields (``string.Template``), so
drawing a repr needs no Jinja2.  ``TEMPLATE_PATHS`` lists where templates
are looked for, first match wins: put a directory first to change a repr.
Values are inserted as given: escape text with ``html.escape`` first.
"""

from __future__ import annotations

import os
from string import Template

#: directories searched for templates, in order
TEMPLATE_PATHS: list[str] = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")]

_cache: dict[str, tuple[float, Template]] = {}


def get_template(name: str) -> Template:
    """The template called ``name`` (e.g. ``"client.html"``)."""
    for directory in TEMPLATE_PATHS:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            mtime = os.path.getmtime(path)
            cached = _cache.get(path)
            if cached is None or cached[0] != mtime:
                with open(path, encoding="utf-8") as f:
                    cached = (mtime, Template(f.read()))
                _cache[path] = cached
            return cached[1]
    raise FileNotFoundError(f"no widget template {name!r} in {TEMPLATE_PATHS}")


def render(template: str, /, **values: object) -> str:
    """Template ``template`` filled with ``values`` (already HTML)."""
    return get_template(template).substitute({k: str(v) for k, v in values.items()})


__all__ = ["TEMPLATE_PATHS", "get_template", "render"]
