"""Improved contrastive divergence (Du, Li, Tenenbaum, Mordatch, ICML 2021): the paper's energies."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_energies(register):
    from ebmkit_improved_cd.resnet import ResNetEnergy, ResNetEnergy128

    register("resnet_ebm", ResNetEnergy)
    register("resnet_ebm_128", ResNetEnergy128)
