"""The kit for testing aliquot plugins -- the same one aliquot's own tests use.

- :func:`make_kernel` builds an in-process kernel with explicit plugin
  objects, third-party autoload off and an in-memory store by default.
- :class:`HookRecorder` records every hook call a kernel makes.
- :func:`run_cli` runs the ``aliquot`` command in-process and returns its
  exit code, stdout and stderr.
- Conformance kits, in the style of ``trio.testing.check_one_way_stream``:
  :func:`check_store`, :func:`check_serializer` and :func:`check_executor`
  run a battery of checks against an implementation and raise
  ``AssertionError`` naming the first rule it breaks. Every builtin passes
  them; contrib packages run them too.

For pytest fixtures (``aliquot_kernel``, ``hook_recorder``), add
``pytest_plugins = ["aliquot.testing.plugin"]`` to your ``conftest.py``.
This module does not import pytest.
"""

from ._harness import CliResult, HookCall, HookRecorder, make_kernel, run_cli
from ._kits import check_executor, check_serializer, check_store

__all__ = [
    "CliResult",
    "HookCall",
    "HookRecorder",
    "check_executor",
    "check_serializer",
    "check_store",
    "make_kernel",
    "run_cli",
]
