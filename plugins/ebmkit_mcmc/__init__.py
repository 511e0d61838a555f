"""MCMC components: transitions, samplers and replay buffers."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_transitions(register):
    from ebmkit_mcmc.langevin import Langevin

    register("langevin", Langevin)


@hookimpl
def ebmkit_register_samplers(register):
    from ebmkit_mcmc.chain import Chain

    register("chain", Chain)


@hookimpl
def ebmkit_register_buffers(register):
    from ebmkit_mcmc.replay import ReplayBuffer

    register("replay", ReplayBuffer)
