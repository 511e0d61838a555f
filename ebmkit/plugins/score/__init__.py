"""Score-matching loss terms for energies: denoising (Vincent 2011) and sliced (Song et al. 2019).

Both fit the model's score −∇ₓE to the data's, so neither needs samples from the model nor
the partition function. Both differentiate ∇ₓE with respect to the parameters (double
backprop). See docs/score_matching.md.
"""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_losses(register):
    from ebmkit.plugins.score.dsm import DenoisingScoreMatching
    from ebmkit.plugins.score.ssm import SlicedScoreMatching

    register("dsm", DenoisingScoreMatching)
    register("ssm", SlicedScoreMatching)
