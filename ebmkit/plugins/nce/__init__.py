"""Noise-contrastive estimation (Gutmann & Hyvärinen, AISTATS 2010): an energy trained by telling
data from samples of a known noise distribution. See docs/nce.md."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_losses(register):
    from ebmkit.plugins.nce.nce import NoiseContrastiveEstimation

    register("nce", NoiseContrastiveEstimation)
