"""The base class of ``shoal.Client``'s mixins (``introspection.py``,
``control.py``, ``compute.py``, ``datasets.py``, ``plugins.py``...): at run
time plain ``object``; to the type checker the client's core, whose
``_sync``, ``_request`` and state the mixins use.  The core never imports
a mixin.  Mixin modules import nothing heavy at module level, so that
``from shoal import Client`` stays light."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported: ``from shoal import Client`` stays light
if TYPE_CHECKING:
    from shoal.client.core import ClientCore as MixinBase
else:
    MixinBase = object

__all__ = ["MixinBase"]
