"""A task plugin: import it with `aliquot task-plugins import examples/hello_world`."""

import logging

from aliquot import pyplugs

LOGGER = logging.getLogger(__name__)


@pyplugs.register
def hello(name: str, greeting: str = "Hello") -> str:
    message = f"{greeting}, {name}"
    LOGGER.info(message)
    return message


@pyplugs.register
def shout(text: str) -> str:
    return text.upper() + "!"
