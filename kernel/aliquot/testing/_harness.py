"""An in-process kernel, a hook recorder, and an in-process CLI runner."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._kernel import Kernel


@attrs.frozen
class HookCall:
    """One recorded hook call: its name and keyword arguments (also as attributes)."""

    name: str
    kwargs: Mapping[str, Any]

    def __getattr__(self, item: str) -> Any:
        try:
            return self.kwargs[item]
        except KeyError:
            raise AttributeError(f"hook call {self.name} has no argument {item!r}") from None


class HookRecorder:
    """Records every hook call of the kernels it is attached to (registration and events).

    Pass it to :func:`make_kernel` (``recorder=``) to see the calls made while
    the kernel is built, or :meth:`attach` it to an existing kernel.
    """

    def __init__(self) -> None:
        self.calls: list[HookCall] = []

    def __call__(self, name: str, kwargs: Mapping[str, Any]) -> None:
        self.calls.append(HookCall(name, dict(kwargs)))

    def attach(self, kernel: Kernel) -> HookRecorder:
        kernel.monitors.append(self)
        return self

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def getcalls(self, name: str) -> list[HookCall]:
        """Calls of hook ``name`` (with or without the ``aliquot_`` prefix)."""
        if not name.startswith("aliquot_"):
            name = "aliquot_" + name
        return [c for c in self.calls if c.name == name]

    def assert_called(self, name: str, times: int | None = None) -> list[HookCall]:
        calls = self.getcalls(name)
        if times is None:
            assert calls, f"hook {name} was never called (calls: {self.names()})"
        else:
            assert len(calls) == times, f"hook {name} was called {len(calls)} times, not {times}"
        return calls

    def clear(self) -> None:
        self.calls.clear()


def make_kernel(
    plugins: Sequence[object] = (),
    *,
    autoload: bool = False,
    store: str = "memory://",
    block: Sequence[str] = (),
    load: Sequence[str] = (),
    builtins: bool = True,
    executor: str = "inline",
    recorder: HookRecorder | None = None,
    env: Mapping[str, str] | None = None,
) -> Kernel:
    """A kernel for tests: explicit plugins, no third-party autoload, an in-memory store.

    Builtins load unless blocked (``block=["store_lmdb"]``) or ``builtins=False``.
    The environment's ``ALIQUOT_*`` plugin variables are ignored unless
    ``env`` is given, so a developer's shell cannot change a test.
    """
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("ALIQUOT_")}
    return Kernel.open(
        store,
        plugins=plugins,
        block=block,
        load=load,
        autoload=autoload,
        builtins=builtins,
        executor=executor,
        env=dict(env) if env is not None else clean_env,
        monitors=[recorder] if recorder is not None else (),
    )


@attrs.frozen
class CliResult:
    """What :func:`run_cli` returns."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __repr__(self) -> str:
        out, err = self.stdout[-300:], self.stderr[-300:]
        return f"<CliResult exit={self.exit_code} stdout={out!r} stderr={err!r}>"


def run_cli(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    input: str | bytes | None = None,
    autoload: bool = False,
) -> CliResult:
    """Run ``aliquot ARGS...`` in-process; third-party autoload is off unless ``autoload``."""
    from click.testing import CliRunner

    from ..cli import main

    overrides: dict[str, str | None] = {
        "ALIQUOT_DISABLE_PLUGIN_AUTOLOAD": None if autoload else "1"
    }
    overrides.update(env or {})
    runner = CliRunner()
    code = 0
    with runner.isolation(input=input, env=overrides) as (out, err, _mixed):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        stdout = out.getvalue().decode("utf-8", "replace")
        stderr = err.getvalue().decode("utf-8", "replace")
    return CliResult(code, stdout, stderr)
