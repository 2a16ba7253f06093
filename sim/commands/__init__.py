"""The simulator's subcommands of ``swarmdrive`` (registered as entry points)."""
