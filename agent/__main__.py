"""``python -m agent`` is the ``swarmdrive`` command."""

from agent.cli import entry

entry()
