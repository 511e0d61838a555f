"""Recipes and building: TOML recipes read, overridden and checked against the registries, and
their components built before any run folder exists. It imports only the plugin host."""
