"""Every first-party component passes the contract check of its kind (ebmkit._testkit.contract), and the
check catches the breaks it is there for."""

from __future__ import annotations

import pytest
import torch

from ebmkit._testkit.contract import Bowl, ContractViolation, GradientSteps, Points, check, check_component
from ebmkit._host.protocols import LossOutput, Needs, SampleResult, StepResult
from ebmkit._host.installed import default_registries

from .test_registry_smoke import SMOKE


def collaborators(base: dict) -> dict:
    """The dataset, energy and sampler of a smoke recipe, built as a run builds them."""
    registries = default_registries()
    data = dict(base["data"])
    dataset = registries.create("datasets", data.pop("name"), **data)
    energy_params = dict(base["energy"])
    energy = registries.create("energies", energy_params.pop("name"), data_shape=tuple(dataset.sample_shape),
                               num_classes=dataset.num_classes, **energy_params)
    sampler_params = dict(base["sampler"])
    sampler = registries.create("samplers", sampler_params.pop("name"), **sampler_params)
    return {"dataset": dataset, "energy": energy, "sampler": sampler}


@pytest.mark.parametrize("key", sorted(SMOKE), ids=lambda k: f"{k[0]}-{k[1]}")
def test_first_party_component_keeps_its_contract(key, tmp_path):
    base, params = SMOKE[key]
    kind, name = key
    if name == "resnet_ebm_128":  # its layout downsamples five times
        base = {**base, "data": {"name": "shapes", "size": 16, "image_size": 64}}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ran = check_component(kind, name, params, out_dir=tmp_path, **collaborators(base))
    assert "determinism" in ran


# -- the check catches what it is there for ---------------------------------------------------
class Langevin:
    """A correct transition, to be broken one way at a time below."""

    def __init__(self, step_size: float = 0.05):
        self.step_size = step_size

    def step(self, energy, x, ctx):
        from ebmkit import energy_and_grad

        _, grad = energy_and_grad(energy, x, ctx.cond, create_graph=ctx.create_graph)
        return StepResult(x - self.step_size * grad + 0.01 * torch.randn_like(x), {"grad_norm": grad.flatten(1).norm(dim=1).detach()})


class Unfinished:
    def step(self, energy, x, ctx): ...


class IgnoresCreateGraph(Langevin):
    def step(self, energy, x, ctx):
        return StepResult(super().step(energy, x, ctx).x.detach())


class KeepsGraphAlways(Langevin):
    def step(self, energy, x, ctx):
        from ebmkit import energy_and_grad

        _, grad = energy_and_grad(energy, x, ctx.cond, create_graph=True)
        return StepResult(x - self.step_size * grad)


class InPlace(Langevin):
    def step(self, energy, x, ctx):
        out = super().step(energy, x, ctx)
        x.add_(1.0)
        return out


class OwnUnseededStream(Langevin):
    def __init__(self):
        super().__init__()
        self.generator = torch.Generator().manual_seed(torch.seed())

    def step(self, energy, x, ctx):
        out = super().step(energy, x.detach(), ctx)
        return StepResult(out.x + torch.randn(x.shape, generator=self.generator))


class BadStats(Langevin):
    def step(self, energy, x, ctx):
        return StepResult(super().step(energy, x, ctx).x, {"energy": energy(x).mean()})


@pytest.mark.parametrize(
    ("transition", "says"),
    [
        (Unfinished, "step() returned None; it must return an ebmkit.StepResult"),
        (IgnoresCreateGraph, "create_graph=True has no autograd graph"),
        (KeepsGraphAlways, "with an autograd graph although ctx.create_graph is False"),
        (InPlace, "changed its input x in place"),
        (OwnUnseededStream, "under the same seed, two steps from the same start differ"),
        (BadStats, "stats['energy'] should be a tensor of shape (4,)"),
    ],
)
def test_the_transition_check_names_each_break(transition, says):
    assert check("transition", Langevin) == ["shapes", "detaching", "determinism"]
    with pytest.raises(ContractViolation) as caught:
        check("transition", transition)
    assert says in str(caught.value)


class Reservoir:
    """A buffer; ``forgets`` leaves its count out of state_dict."""

    def __init__(self, forgets: bool = False):
        self.store, self.seen, self.forgets = torch.zeros(8, 2), 0, forgets

    def draw(self, n, data):
        if self.seen == 0:
            return torch.randn(n, *data.shape[1:])
        return self.store[torch.randint(min(self.seen, 8), (n,))].clone()

    def push(self, x):
        for row in x:
            self.store[self.seen % 8] = row
            self.seen += 1

    def __len__(self):
        return min(self.seen, 8)

    def state_dict(self):
        return {"store": self.store.clone()} if self.forgets else {"store": self.store.clone(), "seen": self.seen}

    def load_state_dict(self, state):
        self.store = state["store"].clone()
        self.seen = state.get("seen", 0)


def test_the_buffer_check_catches_state_outside_state_dict():
    assert "state_dict round trip" in check("buffer", Reservoir)
    with pytest.raises(ContractViolation, match="state is kept outside state_dict"):
        check("buffer", lambda: Reservoir(forgets=True))


class BatchNormed(Bowl):
    def __init__(self):
        super().__init__((2,))
        self.norm = torch.nn.BatchNorm1d(2)

    def forward(self, x, cond=None):
        return super().forward(self.norm(x), cond)


def test_the_energy_check_catches_a_batch_dependent_energy():
    assert check("energy", lambda: Bowl((2,))) == ["shapes", "gradients", "determinism", "state_dict round trip"]
    with pytest.raises(ContractViolation, match="depends on the rest of the batch"):
        check("energy", BatchNormed)


class ContrastiveDivergence:
    def __init__(self, keeps_graph_in_metric: bool = False, sign: float = 1.0):
        self.keeps, self.sign = keeps_graph_in_metric, sign

    def __call__(self, batch):
        value = self.sign * (batch.e_pos.mean() - batch.e_neg.mean())
        return LossOutput(value, {"gap": value if self.keeps else value.detach()})


def test_the_loss_check_catches_a_metric_that_keeps_its_graph():
    assert "gradients" in check("loss", ContrastiveDivergence)
    with pytest.raises(ContractViolation, match="keeps an autograd graph"):
        check("loss", lambda: ContrastiveDivergence(keeps_graph_in_metric=True))


class LosesGraph(GradientSteps):
    def sample(self, energy, x0, *, cond=None, keep_graph=0):
        result = super().sample(energy, x0, cond=cond, keep_graph=keep_graph)
        return SampleResult(result.x, {}, None if result.x_graph is None else result.x_graph.detach())


def test_the_sampler_check_catches_an_x_graph_without_a_graph():
    assert "determinism" in check("sampler", GradientSteps)
    with pytest.raises(ContractViolation, match="x_graph with keep_graph=2 has no autograd graph"):
        check("sampler", LosesGraph)


def test_a_loss_asking_for_more_graph_than_the_sampler_keeps_is_told_to_give_one():
    class Deep(ContrastiveDivergence):
        needs = Needs(graph_steps=5)

    with pytest.raises(ContractViolation, match="give a sampler"):
        check("loss", Deep)


def test_a_dataset_with_labels_outside_num_classes_is_caught():
    class Mislabelled(Points):
        def __getitem__(self, index):
            return self.points[index], 7

    assert check("dataset", lambda: Points(num_classes=3)) == ["shapes", "determinism"]
    with pytest.raises(ContractViolation, match="outside 0..2"):
        check("dataset", lambda: Mislabelled(num_classes=3))


def test_a_batched_read_must_equal_reading_the_items_one_by_one():
    class ReadsInOrder(Points):  # a read_batch that sorts the indices it is given
        def read_batch(self, indices):
            return self.points[indices.sort().values], None

    class ReadsAsAsked(Points):
        def read_batch(self, indices):
            return self.points[indices], None

    class ForgetsLabels(Points):
        def read_batch(self, indices):
            return self.points[indices], None

    assert check("dataset", ReadsAsAsked) == ["shapes", "determinism"]
    with pytest.raises(ContractViolation, match=r"read_batch\(\[63, 0, 32, 0\]\) is not"):
        check("dataset", ReadsInOrder)
    with pytest.raises(ContractViolation, match=r"read_batch"):
        check("dataset", lambda: ForgetsLabels(num_classes=3))


def test_a_chain_keeps_no_graph_through_a_transition_that_cannot_keep_one():
    registries = default_registries()
    gibbs = registries.create("samplers", "chain", steps=3, transitions=[{"name": "gibbs"}])
    langevin = registries.create("samplers", "chain", steps=3, transitions=[{"name": "langevin", "step_size": 0.01}])
    assert gibbs.max_graph_steps == 0 and langevin.max_graph_steps == 3


def write_celeba(root):
    from .test_datasets import write_images

    write_images(root / "img_align_celeba", 4)
    rows = ["000000.jpg 1 -1", "000001.jpg -1 1", "000002.jpg 1 1", "000003.jpg -1 -1"]
    (root / "list_attr_celeba.txt").write_text("4\nMale Smiling\n" + "\n".join(rows) + "\n")


def file_dataset_setups():
    from . import test_datasets as files
    from . import test_real_data as real

    folder = (lambda root: files.write_images(root / "sub", 5), {"image_size": 16})
    return {
        "cifar10": (files.write_cifar, {"conditional": True}),
        "cifar100": (files.write_cifar100, {}),
        "svhn": (files.write_svhn, {}),
        "image_folder": folder, "celebahq": folder, "lsun_bedroom": folder,
        "celeba_attributes": (write_celeba, {"attribute": "Male", "image_size": 16}),
        "celebahq_attributes": (lambda root: files.write_celebahq(root, "celebamask"), {"image_size": 8}),
        "mnist": (real.write_mnist, {"conditional": True, "image_size": 14}),
        "fashion_mnist": (real.write_fashion_mnist, {"channels": 3, "binarize": True}),
        "array": (real.write_array, real.array_params),  # parameters from the folder: it takes a path, not a root
    }


def test_every_dataset_that_reads_files_has_files_to_be_checked_on():
    from .test_registry_smoke import FILE_DATASETS

    assert set(file_dataset_setups()) == FILE_DATASETS


@pytest.mark.parametrize("name", sorted(file_dataset_setups()))
def test_datasets_that_read_files_keep_their_contract(name, tmp_path, monkeypatch):
    from .test_datasets import skip_md5

    write, params = file_dataset_setups()[name]
    write(tmp_path)
    skip_md5(monkeypatch)
    params = params(tmp_path) if callable(params) else {"root": str(tmp_path), **params}
    assert check_component("dataset", name, params) == ["shapes", "determinism"]


def test_the_loss_check_catches_a_loss_cut_off_from_the_weights():
    class ReadOut(ContrastiveDivergence):
        def __call__(self, batch):
            return LossOutput(torch.tensor(float(super().__call__(batch).value.detach())))

    with pytest.raises(ContractViolation, match="the loss has no autograd graph to the energy's parameters"):
        check("loss", ReadOut)
