"""A misspelt hook is an error of its plugin, caught after loading."""

from __future__ import annotations

import pytest

import aliquot
from aliquot._plugins import PluginManager
from aliquot.testing import make_kernel


class Misspelt:
    __name__ = "misspelt"

    @aliquot.hookimpl
    def aliquot_register_serializer(self, register):  # missing the final "s"
        raise AssertionError("never called")


def test_check_pending_catches_a_misspelt_hook() -> None:
    manager = PluginManager()
    manager.load(objects=[Misspelt()], autoload=False, env={})
    info = manager.infos["misspelt"]
    assert info.status == "error"
    assert "unknown hook 'aliquot_register_serializer'" in (info.error or "")
    assert "did you mean 'aliquot_register_serializers'" in (info.error or "")
    assert manager.errors and manager.errors[0].name == "misspelt"


def test_a_kernel_refuses_to_open_with_a_misspelt_hook() -> None:
    with pytest.raises(aliquot.PluginLoadError, match="unknown hook 'aliquot_register_serializer'"):
        make_kernel([Misspelt()])


def test_optional_hooks_are_allowed() -> None:
    class Optional:
        __name__ = "optional"

        @aliquot.hookimpl(optionalhook=True)
        def aliquot_future_hook(self):
            return None

    with make_kernel([Optional()]) as kernel:
        assert {p.name: p.status for p in kernel.plugins}["optional"] == "loaded"
