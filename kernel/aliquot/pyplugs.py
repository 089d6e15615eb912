"""Dioptra's spelling of task registration: ``from aliquot import pyplugs``.

``@pyplugs.register`` is :func:`aliquot.register` (from the ``tasks`` plugin),
so task-plugin files written for Dioptra's ``dioptra.pyplugs`` need only their
import changed. The name is resolved lazily, like the rest of the facade.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aliquot_builtins.tasks import register as register

__all__ = ["register"]


def __getattr__(name: str) -> Any:
    if name != "register":
        raise AttributeError(f"module 'aliquot.pyplugs' has no attribute {name!r}")
    value = importlib.import_module("aliquot_builtins.tasks").register
    globals()[name] = value
    return value
