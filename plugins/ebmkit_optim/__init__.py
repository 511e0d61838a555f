"""Optimisers."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_optimizers(register):
    from ebmkit_optim.adam import adam

    register("adam", adam)
