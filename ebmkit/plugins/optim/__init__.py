"""Optimisers."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_optimizers(register):
    from ebmkit.plugins.optim.adam import adam
    from ebmkit.plugins.optim.sgd import sgd

    register("adam", adam)
    register("sgd", sgd)
