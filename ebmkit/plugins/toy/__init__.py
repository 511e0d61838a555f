"""Toy components: an MLP energy, the standard 2-D densities, and a 2-D evaluator."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_energies(register):
    from ebmkit.plugins.toy.gaussian import QuadraticEnergy
    from ebmkit.plugins.toy.mlp import MLPEnergy

    register("mlp", MLPEnergy)
    register("quadratic", QuadraticEnergy, provides=("gaussian_energy",))


@hookimpl
def ebmkit_register_datasets(register):
    import attrs

    from ebmkit.plugins.toy.densities import DENSITIES, Density2DDataset

    @attrs.frozen(kw_only=True)
    class DensityParams:
        size: int = attrs.field(default=50_000, validator=attrs.validators.gt(0))
        seed: int = 0

    for name, density in DENSITIES.items():
        def factory(size: int = 50_000, seed: int = 0, _density=density) -> Density2DDataset:
            return Density2DDataset(_density, size=size, seed=seed)

        factory.declared = lambda **_: (Density2DDataset.sample_shape, Density2DDataset.domain, None)  # (validate --no-data)
        register(name, factory, params=DensityParams, summary=f"2-D density: {density.summary}", provides=("exact_2d_density",))

    from ebmkit.plugins.toy.gaussian import GaussianData

    register("gaussian", GaussianData, provides=("standard_normal_data",))


@hookimpl
def ebmkit_register_evaluators(register):
    from ebmkit.plugins.toy.density2d import Density2DEvaluator
    from ebmkit.plugins.toy.gaussian import GaussianKL

    register("density2d", Density2DEvaluator, requires=("exact_2d_density",))
    register("gaussian_kl", GaussianKL, requires=("gaussian_energy", "standard_normal_data"))
