"""swarmdrive's crop classifier as a Flower App (see pyproject.toml)."""
