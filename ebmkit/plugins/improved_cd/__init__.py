"""Improved contrastive divergence (Du, Li, Tenenbaum, Mordatch, ICML 2021): the paper's energies."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_energies(register):
    from ebmkit.plugins.improved_cd.resnet import ResNetEnergy, ResNetEnergy128

    register("resnet_ebm", ResNetEnergy)
    register("resnet_ebm_128", ResNetEnergy128)


@hookimpl
def ebmkit_register_losses(register):
    from ebmkit.plugins.improved_cd.kl import KLTerm
    from ebmkit.plugins.improved_cd.nn_entropy import NearestNeighbourEntropy

    register("kl", KLTerm)
    register("nn_entropy", NearestNeighbourEntropy, requires=("reference_set",))
