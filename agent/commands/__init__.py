"""One module per ``swarmdrive`` subcommand: ``add_parser(sub)`` and ``run(args) -> exit code``."""
