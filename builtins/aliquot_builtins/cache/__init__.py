"""The ``cache`` plugin: results are reused when nothing they depend on changed.

It serves every task type. Block it (``-p no:cache``) and everything computes.
What a key covers, when an entry is a hit, and how misses are explained is in
``spec/cache.md``; the parts live in:

- ``_fingerprint``: fingerprints of code (the task and what it reaches);
- ``_middleware``: keys, entries, the plan participant and the middleware;
- ``_commands``: ``aliquot explain`` and ``aliquot cache ls|clear``.

Run options: ``--overwrite`` recomputes everything, ``--overwrite-stage NAME``
recomputes that task and everything downstream of it (both replace the entries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import click

from aliquot import hookimpl

from ._middleware import SPACE, CacheMiddleware, decode_entry

__all__ = ["CacheMiddleware"]


@hookimpl(trylast=True)
def aliquot_register_middleware(register: Callable[..., None]) -> None:
    register(CacheMiddleware())


@hookimpl(trylast=True)
def aliquot_register_run_options(register: Callable[..., None]) -> None:
    register(
        click.Option(
            ["--overwrite"],
            is_flag=True,
            default=False,
            help="Recompute every node and replace its cache entries.",
        )
    )
    register(
        click.Option(
            ["--overwrite-stage", "overwrite_stage"],
            multiple=True,
            metavar="NAME",
            help="Recompute task NAME and everything downstream of it (repeatable).",
        )
    )


@hookimpl(trylast=True)
def aliquot_register_commands(register: Callable[..., None]) -> None:
    from ._commands import cache_group, explain

    register(explain)
    register(cache_group)


def _live(kernel: Any) -> Iterator[str]:
    for _, raw in kernel.store.scan(SPACE):
        try:
            _, doc = decode_entry(raw)
        except ValueError:
            continue  # an unreadable entry is never a hit: its values need not live
        for ref in doc["outputs"].values():
            yield ref["digest"]


@hookimpl(trylast=True)
def aliquot_register_value_roots(register: Callable[..., None]) -> None:
    register("cache", _live)
