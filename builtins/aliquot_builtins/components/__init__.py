"""The ``components`` plugin: Superduper's declarative components, stored safely.

- :class:`Component`: annotated fields (attrs underneath), ``identifier``
  first; lifecycle methods ``postinit``, ``setup``, ``on_create``,
  ``cleanup``; ``@trigger`` methods checked when the class is defined.
- ``encode()`` / ``decode()``: a JSON document for what JSON carries, blobs
  (content-addressed, through the kernel's serializers) for the rest,
  nested components once each by ``huuid`` (``spec/component.schema.json``).
- Kernel methods ``apply``, ``load``, ``remove``, ``show``; commands
  ``aliquot apply`` and ``aliquot components ls|show|remove|export``.

The contract is ``spec/components.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from aliquot import hookimpl

from ._component import Component, ComponentDefinitionError, ComponentError
from ._encoding import Encoded, decode, encode
from ._store import (
    Applied,
    AppliedComponent,
    ComponentInUseError,
    ComponentNotFoundError,
    apply,
    blob_roots,
    load,
    remove,
    show,
)

__all__ = [
    "Applied",
    "AppliedComponent",
    "Component",
    "ComponentDefinitionError",
    "ComponentError",
    "ComponentInUseError",
    "ComponentNotFoundError",
    "Encoded",
    "apply",
    "decode",
    "encode",
    "load",
    "remove",
    "show",
]


@hookimpl(trylast=True)
def aliquot_register_kernel_methods(register: Callable[..., None]) -> None:
    register("apply", apply)
    register("load", load)
    register("remove", remove)
    register("show", show)


@hookimpl(trylast=True)
def aliquot_register_value_roots(register: Callable[..., None]) -> None:
    register("components", blob_roots)


@hookimpl(trylast=True)
def aliquot_register_commands(register: Callable[..., None]) -> None:
    from ._cli import apply_command, components_group

    register(apply_command)
    register(components_group)
