"""pytest fixtures for plugin authors: ``pytest_plugins = ["aliquot.testing.plugin"]``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._kernel import Kernel
from ._harness import HookRecorder, make_kernel


@pytest.fixture
def hook_recorder() -> HookRecorder:
    """A fresh :class:`~aliquot.testing.HookRecorder`."""
    return HookRecorder()


@pytest.fixture
def aliquot_kernel(hook_recorder: HookRecorder) -> Iterator[Kernel]:
    """An in-memory kernel with the builtins, recorded by ``hook_recorder``."""
    kernel = make_kernel(recorder=hook_recorder)
    try:
        yield kernel
    finally:
        kernel.close()
