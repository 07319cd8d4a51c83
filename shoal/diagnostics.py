"""``from shoal.diagnostics import progress`` (as ``distributed.diagnostics``)."""

from shoal.client.progress import progress

__all__ = ["progress"]
