"""MCMC components: transitions, samplers and replay buffers."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_transitions(register):
    from ebmkit.plugins.mcmc.augment import Augment
    from ebmkit.plugins.mcmc.hmc import HMC
    from ebmkit.plugins.mcmc.langevin import Langevin
    from ebmkit.plugins.mcmc.mala import MALA

    register("langevin", Langevin)
    register("mala", MALA)
    register("hmc", HMC)
    register("augment", Augment)


@hookimpl
def ebmkit_register_samplers(register):
    from ebmkit.plugins.mcmc.annealed import AnnealedLangevin
    from ebmkit.plugins.mcmc.chain import Chain
    from ebmkit.plugins.mcmc.improved_cd_test_time import improved_cd_test_time
    from ebmkit.plugins.mcmc.rounds import AugmentedRounds
    from ebmkit.plugins.mcmc.tempering import ParallelTempering

    register("chain", Chain, provides=("transition_chain",))
    register("annealed_langevin", AnnealedLangevin)
    register("parallel_tempering", ParallelTempering, summary="parallel tempering (replica exchange): K replicas on E/T_k stepped as one batch by the given transitions, adjacent temperatures swapping states; returns the T = 1 replicas")
    register("rounds", AugmentedRounds, summary="rounds of MCMC steps with an augmentation after each, then steps without; step size / number of models (the reference's composition sampler)")
    register("improved_cd_test_time", improved_cd_test_time, summary="the Improved-CD reference's test-time sampling for FID and IS (36 augmented rounds of 10 Langevin steps, then 160)")


@hookimpl
def ebmkit_register_buffers(register):
    from ebmkit.plugins.mcmc.persistent import DataChains, PersistentChains
    from ebmkit.plugins.mcmc.replay import ReplayBuffer

    register("replay", ReplayBuffer, provides=("reference_set",))
    register("persistent", PersistentChains)
    register("data", DataChains)


@hookimpl
def ebmkit_register_evaluators(register):
    from ebmkit.plugins.mcmc.chain_trace import ChainTrace
    from ebmkit.plugins.mcmc.diagnostics import MCMCDiagnostics
    from ebmkit.plugins.mcmc.energy_histogram import EnergyHistogram

    register("energy_histogram", EnergyHistogram)
    register("chain_trace", ChainTrace)
    register("mcmc_diagnostics", MCMCDiagnostics, summary="bulk ESS and R-hat of independent chains of the sampler (needs ArviZ)")
