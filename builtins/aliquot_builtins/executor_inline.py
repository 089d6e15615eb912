"""The ``inline`` executor: calls run in the trio thread itself.

The cheapest way to run a call: no thread hop, no pickling. Synchronous
functions block the trio loop while they run (so one runs at a time), and
``async def`` tasks are awaited -- ``inline:N`` lets N of them interleave.
This is the default executor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar

from aliquot import Call, hookimpl


class InlineExecutor:
    """Run calls in the trio thread; await coroutines."""

    name: ClassVar[str] = "inline"

    def __init__(self, workers: int | None = None) -> None:
        self.capacity = workers or 1

    async def __aenter__(self) -> InlineExecutor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def submit(self, call: Call) -> Any:
        result = call.fn(*call.args, **call.kwargs)
        if inspect.iscoroutine(result):
            result = await result
        return result


@hookimpl(trylast=True)
def aliquot_register_executors(register: Callable[..., None]) -> None:
    register(InlineExecutor)
