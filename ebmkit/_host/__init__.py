"""The plugin host: the contract every component follows (the protocols, ``Energy``, the
errors and the helpers components call) and the machinery that finds plugins and keeps their
components in registries. It imports no other part of ebmkit."""
