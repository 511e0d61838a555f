"""The files of a scaffolded plugin package, as ``string.Template`` texts.

Placeholders: ``$name`` (the component and entry-point name), ``$module`` (ebmkit_<name>),
``$dist`` (ebmkit-<name>), ``$Class``, ``$kind`` (singular), ``$kinds`` (the registration
hook's suffix), ``$params`` (the parameters the generated test checks the component with), ``$checks`` (the
contract checks that test requires to have run).
Each example component is a real one that trains: the generated recipe uses it.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Component:
    registry: str
    params: str
    #: the contract checks the generated test requires to have run (a subset: ebmkit may add more)
    checks: str
    summary: str
    code: str
    recipe: str


FILES = {
    "pyproject.toml": '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "An ebmkit plugin: the $kind '$name'"
requires-python = ">=3.11"
dependencies = ["ebmkit"]

[project.optional-dependencies]
test = ["pytest>=8"]

# ebmkit finds the plugin through this entry point: `ebmkit plugins` lists it.
[project.entry-points.ebmkit]
$name = "$module"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''',
    "README.md": '''\
# $dist

An [ebmkit](https://pypi.org/project/ebmkit/) plugin that adds the $kind `$name`.

```bash
pip install -e ".[test]"       # installs the plugin; `ebmkit list $kinds` now shows $name
pytest                         # the contract check of a $kind, and a short training run
ebmkit run recipes/$name.toml  # trains an energy on 8 Gaussians with it
```

- `src/$module/$name.py`: the component. Its parameters are its constructor's keyword
  arguments, with their types and defaults; `ebmkit list $kinds $name` shows them.
- `src/$module/__init__.py`: registers it under the name `$name` (the `ebmkit_register_$kinds` hook).
- `tests/test_$name.py`: uses the fixtures ebmkit installs for pytest: `ebmkit_contract` checks
  shapes, detaching, determinism under a seed and the state_dict round trip; `ebmkit_cli` runs
  the command line in a temporary folder. `ebmkit_registries` and `ebmkit_register` give
  registries of chosen plugins, or register a plugin object for one test.
- `recipes/$name.toml`: a recipe that uses it.

`python -c "import ebmkit; help(ebmkit)"` shows the contract of every kind
of component, and `ebmkit hooks` lists the hooks a plugin may implement.
''',
    "src/$module/__init__.py": '''\
"""$dist: the $kind '$name' for ebmkit, found through the 'ebmkit' entry point in pyproject.toml."""

import ebmkit

from $module.$name import $Class


@ebmkit.hookimpl
def ebmkit_register_$kinds(register):
    # The parameters come from $Class's keyword arguments; the summary from its docstring.
    register("$name", $Class)
''',
    "tests/test_$name.py": '''\
"""Tests of the $kind '$name', with the pytest fixtures that ebmkit installs."""

import json
import math
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "$name.toml"


def test_${name}_keeps_the_${kind}_contract(ebmkit_contract):
    # shapes, detaching, determinism under a seed, state_dict round trip
    checks = ebmkit_contract("$kind", "$name", $params)
    assert $checks <= set(checks), checks


def test_a_recipe_trains_with_it(ebmkit_cli):
    result = ebmkit_cli("run", RECIPE, "--set", "train.steps=20", "--set", "train.log_every=10", "--out", "run")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (ebmkit_cli.folder / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "loss" in row]
    assert losses and all(math.isfinite(v) for v in losses)
''',
}

RECIPE_HEAD = '''\
# ebmkit run recipes/$name.toml
# An energy trained on 8 Gaussians by contrastive divergence, with the $kind '$name' of this plugin.

[run]
seed = 0

[data]
name = "8gaussians"
size = 20000
'''
ENERGY = '''
[energy]
name = "mlp"
hidden = 64
depth = 2
'''
SAMPLER = '''
[sampler]
name = "chain"
steps = 20

[[sampler.transitions]]
name = "langevin"
step_size = 0.01
'''
LOSSES = '''
[[losses]]
name = "cd"

[[losses]]
name = "energy_l2"
weight = 0.1
'''
TAIL = '''
[optim]
name = "adam"
lr = 2e-3
betas = [0.0, 0.999]

[train]
steps = 500
batch_size = 128
log_every = 50
'''


DENSITY = '''
[[evaluators]]
name = "density2d"        # the learned density against the exact one on a grid (KL), with a figure
every = 250
'''


def recipe(energy: str = ENERGY, sampler: str = SAMPLER, losses: str = LOSSES, extra: str = "", head: str = RECIPE_HEAD,
           evaluate: str = DENSITY) -> str:
    buffer = '\n[buffer]\nname = "data"              # chains start at the data batch (CD-k)\n' if "[buffer]" not in extra else ""
    return head + energy + sampler + buffer + losses + TAIL + extra + evaluate


COMPONENTS = {
    "transition": Component(
        "transitions", '{"step_size": 0.01}', '{"shapes", "detaching", "determinism"}', "a Langevin step",
        '''\
"""$Class: one step of a Markov kernel on a batch of chains (a transition).

The contract (ebmkit.Transition): step(energy, x, ctx) returns
ebmkit.StepResult(x=<the new chains, shaped like x>, stats={name: tensor of shape (B,)}).
When ctx.create_graph is true, a loss differentiates through this step (improved CD's KL
term): the returned x must keep its graph to the energy's parameters. Otherwise return it
without one. ctx.cond holds the chains' labels (or None), ctx.index and ctx.total where the
step stands in the sampler's run.
"""

import attrs
import torch

import ebmkit


@attrs.frozen(kw_only=True)
class $Class:
    """Langevin step: x <- x - step_size * grad E(x) + noise_std * N(0, I)."""

    step_size: float = attrs.field(default=0.01, validator=attrs.validators.gt(0))
    #: None: sqrt(2 * step_size), the exact Langevin diffusion at temperature 1
    noise_std: float | None = None

    def step(self, energy, x: torch.Tensor, ctx: ebmkit.StepContext) -> ebmkit.StepResult:
        e, grad = ebmkit.energy_and_grad(energy, x, ctx.cond, create_graph=ctx.create_graph)
        noise_std = (2 * self.step_size) ** 0.5 if self.noise_std is None else self.noise_std
        x_next = x - self.step_size * grad + noise_std * torch.randn_like(x)
        return ebmkit.StepResult(x_next, {"energy": e.detach(), "grad_norm": grad.detach().flatten(1).norm(dim=1)})
''',
        recipe(sampler='''
[sampler]
name = "chain"
steps = 20

[[sampler.transitions]]
name = "$name"
step_size = 0.01
'''),
    ),
    "sampler": Component(
        "samplers", '{"steps": 5}', '{"shapes", "detaching", "determinism"}', "Langevin dynamics",
        '''\
"""$Class: draws samples from an energy, starting from x0 (a sampler).

The contract (ebmkit.Sampler): sample(energy, x0, *, cond=None, keep_graph=0)
returns ebmkit.SampleResult(x=<samples, detached>, trace={name: 1-D tensor per step},
x_graph=...). keep_graph=k asks for the samples again with the autograd graph of the last k
steps (from a detached start), for losses that differentiate through the sampler; declare
the most you can keep as max_graph_steps.
"""

import attrs
import torch

import ebmkit


@attrs.frozen(kw_only=True)
class $Class:
    """Unadjusted Langevin dynamics for a fixed number of steps."""

    steps: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    step_size: float = attrs.field(default=0.01, validator=attrs.validators.gt(0))
    #: None: sqrt(2 * step_size), the exact Langevin diffusion at temperature 1
    noise_std: float | None = None

    @property
    def max_graph_steps(self) -> int:
        return self.steps

    def sample(self, energy, x0: torch.Tensor, *, cond=None, keep_graph: int = 0) -> ebmkit.SampleResult:
        noise_std = (2 * self.step_size) ** 0.5 if self.noise_std is None else self.noise_std
        x, energies = x0.detach(), []
        for index in range(self.steps):
            graph = index >= self.steps - keep_graph  # only the last keep_graph steps keep their graph
            e, grad = ebmkit.energy_and_grad(energy, x, cond, create_graph=graph)
            x = x - self.step_size * grad + noise_std * torch.randn_like(x)
            if not graph:
                x = x.detach()
            energies.append(e.detach().mean())
        return ebmkit.SampleResult(x.detach(), {"energy": torch.stack(energies)}, x if keep_graph else None)
''',
        recipe(sampler='''
[sampler]
name = "$name"
steps = 20
step_size = 0.01
'''),
    ),
    "energy": Component(
        "energies", '{"hidden": 16}', '{"shapes", "gradients", "determinism", "state_dict round trip"}', "a perceptron energy",
        '''\
"""$Class: an energy, a torch.nn.Module mapping a batch to one energy per sample.

The contract (ebmkit.Energy): forward(x, cond=None) returns shape (B,), with
p(x) proportional to exp(-E(x)): low energy where the data is. A sample's energy must not
depend on the rest of its batch (no batch normalisation). The factory receives the context
keywords data_shape (one sample's shape) and num_classes (or None) when it accepts them;
every other keyword argument is a parameter of the recipe's [energy] table.
"""

import math

import torch
from torch import nn

import ebmkit


class $Class(ebmkit.Energy):
    """A perceptron energy on flattened inputs, labels added as an embedding."""

    def __init__(self, hidden: int = 64, *, data_shape: tuple[int, ...], num_classes: int | None = None):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden must be at least 1, got {hidden}")
        features = math.prod(data_shape)
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.label_embedding = nn.Embedding(num_classes, features) if num_classes else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.label_embedding is not None and cond is not None:
            h = h + self.label_embedding(cond.long())
        return self.net(h).squeeze(1)
''',
        recipe(energy='''
[energy]
name = "$name"
hidden = 64
'''),
    ),
    "loss": Component(
        "losses", '{"alpha": 0.1}', '{"shapes", "gradients", "detaching", "determinism"}', "contrastive divergence with an energy penalty",
        '''\
"""$Class: a loss term, minimised over the energy's parameters.

The contract (ebmkit.Loss): loss(batch) returns ebmkit.LossOutput(value=<a 0-d
tensor>, metrics={name: float or detached 0-d tensor}). batch.e_pos and batch.e_neg are the
energies of the data and of the sampler's samples, computed once and shared by every term.
needs (an ebmkit.Needs) says what the loop must produce: negatives, and graph_steps=k for a
term that differentiates through the sampler's last k steps (batch.x_neg_graph).
"""

from typing import ClassVar

import attrs

import ebmkit


@attrs.frozen(kw_only=True)
class $Class:
    """Contrastive divergence, mean E(x+) - mean E(x-), plus alpha * (E(x+)^2 + E(x-)^2)."""

    alpha: float = attrs.field(default=0.1, validator=attrs.validators.ge(0))
    needs: ClassVar[ebmkit.Needs] = ebmkit.Needs(negatives=True, graph_steps=0)

    def __call__(self, batch: ebmkit.TrainBatch) -> ebmkit.LossOutput:
        gap = batch.e_pos.mean() - batch.e_neg.mean()
        penalty = self.alpha * (batch.e_pos.pow(2).mean() + batch.e_neg.pow(2).mean())
        return ebmkit.LossOutput(gap + penalty, {"$name/gap": gap.detach(), "$name/penalty": penalty.detach()})
''',
        recipe(losses='''
[[losses]]
name = "$name"
alpha = 0.1
'''),
    ),
    "buffer": Component(
        "buffers", '{"capacity": 64}', '{"shapes", "detaching", "determinism", "state_dict round trip"}', "a replay buffer",
        '''\
"""$Class: where chains start, and what is kept of them between updates (a buffer).

The contract (ebmkit.Buffer): draw(n, data) returns n chain starts shaped like the
data's samples, on data's device and dtype; push(x) is offered the sampler's final samples
after each update; len() says how many samples it holds. A buffer with changing state has
state_dict() and load_state_dict(), so checkpoints keep it and a resumed run continues
exactly. The factory receives noise(n), fresh chain starts from the data's domain.
"""

import torch

from ebmkit import EbmkitError


class $Class:
    """A replay buffer: chains restart from earlier samples, a fraction from fresh noise."""

    def __init__(self, capacity: int = 10000, restart: float = 0.05, *, noise):
        if capacity < 1 or not 0 <= restart <= 1:
            raise EbmkitError(f"capacity must be at least 1 and restart within [0, 1], got {capacity} and {restart}")
        self.capacity, self.restart, self.noise = capacity, restart, noise
        self.samples = torch.empty(0)

    def __len__(self) -> int:
        return len(self.samples)

    def draw(self, n: int, data: torch.Tensor) -> torch.Tensor:
        fresh = self.noise(n).to(data.device, data.dtype)
        if len(self.samples) == 0:
            return fresh
        kept = self.samples[torch.randint(len(self.samples), (n,))].to(data.device, data.dtype)
        restart = (torch.rand(n, device=data.device) < self.restart).view(n, *[1] * (data.dim() - 1))
        return torch.where(restart, fresh, kept)

    def push(self, x: torch.Tensor) -> None:
        x = x.detach().cpu()
        self.samples = torch.cat([x, self.samples])[: self.capacity] if len(self.samples) else x.clone()

    def state_dict(self) -> dict:
        return {"samples": self.samples.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.samples = state["samples"].clone()
''',
        recipe(extra='''
[buffer]
name = "$name"
capacity = 10000
'''),
    ),
    "evaluator": Component(
        "evaluators", '{"num_samples": 16}', '{"shapes", "determinism"}', "the energy gap between samples and data",
        '''\
"""$Class: computes metrics (and may write files) for a model (an evaluator).

The contract (ebmkit.Evaluator): evaluate(ctx) returns {name: number or text}.
ctx (an ebmkit.EvalContext) holds the energy (EMA weights when the run keeps them), the
dataset, the run's sampler, noise(n) for chain starts, out_dir to write files into, the
step and the device. Metrics are logged as '<evaluator>/<name>'.
"""

import attrs
import torch

import ebmkit


@attrs.frozen(kw_only=True)
class $Class:
    """Mean energy of data and of fresh samples, and their gap (samples minus data)."""

    num_samples: int = attrs.field(default=256, validator=attrs.validators.ge(1))

    def evaluate(self, ctx: ebmkit.EvalContext) -> dict[str, float]:
        n = min(self.num_samples, len(ctx.dataset))
        items = [ctx.dataset[i] for i in range(n)]
        labelled = isinstance(items[0], (tuple, list))
        x = torch.stack([item[0] if labelled else item for item in items]).to(ctx.device)
        cond = torch.tensor([int(item[1]) for item in items], device=ctx.device) if labelled else None
        samples = ctx.sampler.sample(ctx.energy, ctx.noise(n).to(ctx.device), cond=cond).x
        with torch.no_grad():
            data_energy = ctx.energy(x, cond).mean().item()
            sample_energy = ctx.energy(samples, cond).mean().item()
        return {"data_energy": data_energy, "sample_energy": sample_energy, "gap": sample_energy - data_energy}
''',
        recipe(extra='''
[[evaluators]]
name = "$name"
num_samples = 256
every = 100
'''),
    ),
    "dataset": Component(
        "datasets", '{"size": 64}', '{"shapes", "determinism"}', "points on a noisy ring",
        '''\
"""$Class: a map-style dataset of samples, or (sample, label) pairs.

The contract (ebmkit.Dataset): __len__, __getitem__, and the attributes
sample_shape (one sample's shape), domain ((low, high) bounds for fresh chain starts, or
None for a standard normal) and num_classes (or None for unlabelled data). Generate data
from a seed, or read it from files; never download at training time.
"""

import math

import torch


class $Class(torch.utils.data.Dataset):
    """Points on a ring of the given radius, blurred by Gaussian noise of std width."""

    def __init__(self, size: int = 20000, radius: float = 2.0, width: float = 0.1, seed: int = 0):
        if size < 1 or radius <= 0 or width < 0:
            raise ValueError(f"need size >= 1, radius > 0 and width >= 0, got {size}, {radius}, {width}")
        generator = torch.Generator().manual_seed(seed)
        angle = torch.rand(size, generator=generator) * 2 * math.pi
        r = radius + width * torch.randn(size, generator=generator)
        self.points = torch.stack([r * angle.cos(), r * angle.sin()], dim=1)
        self.sample_shape, self.domain, self.num_classes = (2,), None, None

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.points[index]
''',
        recipe(head=RECIPE_HEAD.replace('name = "8gaussians"\nsize = 20000', 'name = "$name"\nsize = 20000').replace("on 8 Gaussians", "on a ring"), evaluate=""),
    ),
}
