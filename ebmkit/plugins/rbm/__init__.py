"""Restricted Boltzmann machines: the binary RBM, block Gibbs sampling, exact and AIS log-likelihoods."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_energies(register):
    from ebmkit.plugins.rbm.rbm import BinaryRBM

    register("rbm", BinaryRBM, provides=("block_conditionals", "binary_rbm"))


@hookimpl
def ebmkit_register_evaluators(register):
    from ebmkit.plugins.rbm.evaluator import RBMLikelihood

    register("rbm_likelihood", RBMLikelihood, requires=("binary_rbm",))


@hookimpl
def ebmkit_register_transitions(register):
    from ebmkit.plugins.rbm.gibbs import BlockGibbs

    register("gibbs", BlockGibbs, requires=("block_conditionals",))
