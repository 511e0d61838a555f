"""The training engine: a run's life (set up, train, evaluate, checkpoint, resume), data-parallel
ranks, the fast paths of ``[run]`` and the checkpoint store. It imports the plugin host and
recipes."""
