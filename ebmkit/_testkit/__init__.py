"""The test kit for plugin authors: the contract of each kind as checks a test runs, and the
pytest fixtures installed by the ``pytest11`` entry point."""
