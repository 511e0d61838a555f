"""Optimisers."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_optimizers(register):
    from ebmkit_optim.adam import adam
    from ebmkit_optim.sgd import sgd

    register("adam", adam)
    register("sgd", sgd)
