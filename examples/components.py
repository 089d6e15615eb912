"""The seed's component: a notifier applied to the store, with ordered triggers.

    aliquot apply examples/components.py:notifier     # on_create, then `start` and `go` as jobs
    aliquot apply examples/components.py:notifier     # same: nothing runs
    aliquot components ls                             # Notifier:n1 v0
    aliquot jobs ls                                   # the two trigger jobs
    aliquot components remove Notifier:n1             # calls cleanup

The seed connects to Slack in ``setup``; here the client prints instead.
"""

from __future__ import annotations

import inspect
import typing as t

from aliquot import Component, trigger


class ConsoleClient:
    """Stands in for a chat client: every call prints one line."""

    def register(self, name: str) -> None:
        print(f"[client] registered {name}")

    def send_message(self, text: str) -> None:
        print(f"[client] {text}")

    def teardown(self, name: str) -> None:
        print(f"[client] tore down {name}")


def report(a: int, b: str, c: dict[str, int]) -> None:
    print(f"[report] a={a} b={b} c={c}")


class Notifier(Component):
    a: int
    b: str
    c: t.Dict  # noqa: UP006 -- spelled as in the seed
    d: t.Callable | None = None

    # Called right after construction (and after loading).
    def postinit(self) -> None:
        if self.d is not None:
            assert {"a", "b", "c"} <= set(inspect.signature(self.d).parameters)

    # Called once per instance, before the first trigger (or by on_create).
    def setup(self) -> None:
        self.client = ConsoleClient()

    # Called after a new version is saved to the store.
    def on_create(self) -> None:
        self.setup()
        self.client.register(self.identifier)

    # Called when it is removed with `kernel.remove` / `aliquot components remove`.
    def cleanup(self) -> None:
        self.setup()
        self.client.teardown(self.identifier)

    # Methods with @trigger run as jobs.
    @trigger("apply")
    def start(self) -> None:
        self.client.send_message(f"initializing {self.huuid}")

    # `go` waits for `start` (depends_on) and runs only when `d` is set (requires).
    @trigger("apply", depends_on="start", requires="d")
    def go(self) -> None:
        assert self.d is not None
        self.d(a=self.a, b=self.b, c=self.c)


notifier = Notifier("n1", a=1, b="x", c={"k": 1}, d=report)
