"""Contrastive-divergence loss terms."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_losses(register):
    from ebmkit.plugins.cd.cd import ContrastiveDivergence
    from ebmkit.plugins.cd.energy_l2 import EnergyL2

    register("cd", ContrastiveDivergence)
    register("energy_l2", EnergyL2)
