"""Diffusion contrastive divergence (Luo et al. 2023), as reconstructed in docs/dcd.md.

The paper's full text was not available; what is built here is the reconstruction in the
project's reference notes: DCD_Q = KL(p_d||p_θ) − KL(Q p_d||Q p_θ) for a θ-free Gaussian
diffusion kernel Q (variance exploding or variance preserving), with two estimators; and
Energy Discrepancy (Schröder et al. 2023), whose Gaussian case is the MCMC-free estimator.
"""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_losses(register):
    from ebmkit.plugins.dcd.energy_discrepancy import EnergyDiscrepancy
    from ebmkit.plugins.dcd.log_mean_exp import DCDLogMeanExp
    from ebmkit.plugins.dcd.recovery import DCDRecovery

    register("dcd_recovery", DCDRecovery)
    register("dcd_log_mean_exp", DCDLogMeanExp)
    register("energy_discrepancy", EnergyDiscrepancy)


@hookimpl
def ebmkit_register_evaluators(register):
    from ebmkit.plugins.dcd.denoise import Denoise

    register("denoise", Denoise)
