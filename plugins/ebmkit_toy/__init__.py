"""Toy components: an MLP energy, the standard 2-D densities, and a 2-D evaluator."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_energies(register):
    from ebmkit_toy.mlp import MLPEnergy

    register("mlp", MLPEnergy)


@hookimpl
def ebmkit_register_datasets(register):
    from ebmkit_toy.densities import DENSITIES, Density2DDataset

    for name, density in DENSITIES.items():
        def factory(size: int = 50_000, seed: int = 0, _density=density) -> Density2DDataset:
            return Density2DDataset(_density, size=size, seed=seed)

        register(name, factory, summary=f"2-D density: {density.summary}")


@hookimpl
def ebmkit_register_evaluators(register):
    from ebmkit_toy.density2d import Density2DEvaluator

    register("density2d", Density2DEvaluator)
