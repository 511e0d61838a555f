"""Energy Matching (Balcerak et al., NeurIPS 2025): one time-independent potential that is a
transport from noise to data far from it and a Boltzmann density at it.

Two loss terms and a sampler: ``flow_matching`` (the warm-up: minibatch-OT flow matching of
the velocity −∇V), ``energy_matching_cd`` (the contrastive phase's term with the paper's
stabilisers) and the ``energy_matching`` sampler (the temperature schedule's dynamics, by
Euler–Heun or Euler–Maruyama). See docs/energy_matching.md.
"""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_losses(register):
    from ebmkit.plugins.energy_matching.contrastive import EnergyMatchingCD
    from ebmkit.plugins.energy_matching.flow_matching import FlowMatching

    register("flow_matching", FlowMatching)
    register("energy_matching_cd", EnergyMatchingCD)


@hookimpl
def ebmkit_register_samplers(register):
    from ebmkit.plugins.energy_matching.sampler import EnergyMatchingSampler

    register("energy_matching", EnergyMatchingSampler)
