"""aliquot-dask: the ``dask`` executor, for runs that outgrow one machine.

Installing this distribution registers the plugin ``dask`` (entry point group
``aliquot.plugins``); nothing else is needed::

    aliquot run experiment.py --executor dask                       # a LocalCluster here
    aliquot run experiment.py --executor dask --dask-address tcp://scheduler:8786

    kernel.run(experiment, executor="dask", executor_options={"address": "tcp://..."})

See ``_executor`` for how calls travel, what is shared, and how failures and
cancellation are handled.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from aliquot import hookimpl

from ._executor import DaskExecutor, DaskExecutorError

__all__ = ["DaskExecutor", "DaskExecutorError"]


@hookimpl
def aliquot_register_executors(register: Callable[..., None]) -> None:
    register(DaskExecutor)


@hookimpl
def aliquot_register_run_options(register: Callable[..., None]) -> None:
    register(
        click.Option(
            ["--dask-address", "dask_address"],
            default=None,
            metavar="ADDRESS",
            help="With --executor dask: the scheduler to connect to (default: start a "
            "LocalCluster on 127.0.0.1 for the run).",
        )
    )
