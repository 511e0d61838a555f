"""The test suite. A package, so that ``tests`` here wins over any installed distribution
that ships a top-level ``tests`` package (torch-fidelity does)."""
