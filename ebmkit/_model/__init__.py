"""The model API: a trained energy loaded back (``ebmkit.load``), sampled (``ebmkit.sample``),
composed (``ebmkit.compose``, ``ebmkit compose``) and evaluated (``ebmkit eval``)."""
