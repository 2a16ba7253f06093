"""The vehicle's one TOML config file: its schema, its example, and the checks both daemons
and ``swarmdrive config check`` run on it."""
