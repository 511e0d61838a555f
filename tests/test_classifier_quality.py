"""classifier_quality on real digits at 8 px: the classifier, its cache, the floor and ceiling of
the Fréchet distance, class coverage and conditioning; and one-channel images through the other
image evaluators (sample grids scaled up, FID with stand-in features, OOD)."""

from __future__ import annotations

import math

import pytest
import torch

from ebmkit._host.data import chain_starts
from ebmkit._host.errors import EbmkitError
from ebmkit._host.protocols import EvalContext, SampleResult

pytest.importorskip("torch_fidelity")
pytest.importorskip("sklearn")

from ebmkit.plugins.images import classifier_quality as quality  # noqa: E402
from ebmkit.plugins.images.digits import Digits  # noqa: E402

SIZE = 8


def digits(split: str = "train", conditional: bool = True, image_size: int = SIZE) -> Digits:
    return Digits(split=split, image_size=image_size, conditional=conditional)


class Replay:
    """A stand-in sampler that returns given images (cycled), whatever the chain starts."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def sample(self, energy, x0, *, cond=None, keep_graph=0):
        index = torch.arange(len(x0)) % len(self.images)
        return SampleResult(self.images[index].clone())


class Untouched:
    """A stand-in sampler that returns the chain starts: uniform noise."""

    def sample(self, energy, x0, *, cond=None, keep_graph=0):
        return SampleResult(x0.clone())


class RightClass:
    """A stand-in conditional model: the sample for label y is an image of digit y."""

    def __init__(self, dataset: Digits):
        self.by_class = [dataset.images[dataset.labels == y] for y in range(10)]
        self.drawn = [0] * 10

    def sample(self, energy, x0, *, cond=None, keep_graph=0):
        out = []
        for y in cond.tolist():
            out.append(self.by_class[y][self.drawn[y] % len(self.by_class[y])])
            self.drawn[y] += 1
        return SampleResult(torch.stack(out))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the classifier is trained once, by the first test that needs it."""
    return tmp_path_factory.mktemp("classifier_cache")


def context(tmp_path, cache, sampler, dataset=None, **kwargs) -> EvalContext:
    dataset = dataset if dataset is not None else digits(conditional=False)
    noise = chain_starts(dataset.sample_shape, dataset.domain)
    return EvalContext(None, dataset, sampler, noise, tmp_path, 0, torch.device("cpu"), cache_dir=cache, ema=False, **kwargs)


def evaluator(**kwargs) -> quality.ClassifierQuality:
    sets = {"train_set": digits("train"), "test_set": digits("test")}
    return quality.ClassifierQuality(**{**sets, **kwargs})


def evaluate(ctx: EvalContext, **kwargs) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return evaluator(**kwargs).evaluate(ctx)


def halves() -> tuple[torch.Tensor, torch.Tensor]:
    """Halves A and B of the test split's images, as the evaluator reads them."""
    test = quality.read_labelled(digits("test"), 2_000)
    half_a, half_b = quality.split_halves(test.labels)
    return test.images[half_a], test.images[half_b]


def test_the_classifier_is_accurate_on_held_out_digits_and_cached(tmp_path, cache, monkeypatch):
    found = evaluate(context(tmp_path, cache, Untouched()))
    assert found["classifier_accuracy"] >= 0.9
    assert len(list(cache.glob("classifier_quality_1x8x8_300steps_*.safetensors"))) == 1

    def retrain(*args, **kwargs):
        raise AssertionError("the cached classifier was trained again")

    monkeypatch.setattr(quality, "train_classifier", retrain)
    again = evaluate(context(tmp_path, cache, Untouched()))
    numbers = {k: v for k, v in found.items() if not isinstance(v, str)}
    assert {k: v for k, v in again.items() if not isinstance(v, str)} == numbers  # same classifier, same samples
    with pytest.raises(AssertionError, match="trained again"):  # other settings, another classifier
        evaluate(context(tmp_path, cache, Untouched()), train_steps=299)


def test_the_floor_is_far_below_the_ceiling_and_noise_samples_score_the_ceiling(tmp_path, cache):
    found = evaluate(context(tmp_path, cache, Untouched()))
    assert found["fd_noise"] > 10 * found["fd_real"] > 0
    assert found["fd_real"] < found["fd_train"] < found["fd_noise"]  # images the classifier was fit to
    assert found["fd"] == pytest.approx(found["fd_noise"], rel=0.25)
    assert found["fd_ratio"] == pytest.approx(found["fd"] / found["fd_real"])
    protocol = found["protocol"]
    assert "floor fd_real" in protocol and "ceiling fd_noise" in protocol and "uniform noise in [0, 1]" in protocol
    assert "test accuracy" in protocol and "raw weights" in protocol and "32-d penultimate layer" in protocol


def test_samples_that_are_the_other_half_of_the_test_split_score_the_floor(tmp_path, cache):
    """Half B of the test split as the samples (given, as ebmkit compose gives them): fd is fd_real."""
    _, half_b = halves()
    found = evaluate(context(tmp_path, cache, None, samples=half_b))
    assert found["fd_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert found["coverage"] > 0.95 and found["fraction/7"] == pytest.approx(0.1, abs=0.03)
    assert "carries_condition" not in found  # given samples carry no condition
    # the same digits without the dequantisation noise of the evaluator's reading: still the floor
    plain = digits("test").images[quality.split_halves(digits("test").labels)[1]]
    assert evaluate(context(tmp_path, cache, None, samples=plain))["fd_ratio"] == pytest.approx(1.0, abs=0.3)


def test_the_distances_average_halvings_of_the_test_split_each_with_samples_of_its_own(tmp_path, cache):
    """Five seeded halvings, each balanced over the digits; the floor is the mean of their floors
    (one halving's floor alone varies by a quarter), and each halving scores samples it alone gets."""
    test = quality.read_labelled(digits("test"), 2_000)
    halvings = [quality.split_halves(test.labels, k) for k in range(5)]
    for a, b in halvings:
        assert len(a) == len(b) == 180 and not set(a.tolist()) & set(b.tolist())
        assert torch.bincount(test.labels[b], minlength=10).tolist() == [18] * 10
    assert len({tuple(b.tolist()) for _, b in halvings}) == 5
    model = quality.cached_classifier(cache, quality.read_labelled(digits("train"), 10_000), 10, 300)
    with torch.no_grad():
        features = model.features(test.images).double()
    floors = [quality.frechet_distance(features[b], features[a]) for a, b in halvings]
    assert max(floors) - min(floors) > 0.1 * min(floors)

    class Counting(Untouched):
        drawn = 0

        def sample(self, energy, x0, *, cond=None, keep_graph=0):
            Counting.drawn += len(x0)
            return super().sample(energy, x0, cond=cond)

    found = evaluate(context(tmp_path, cache, Counting()))
    assert found["fd_real"] == pytest.approx(sum(floors) / 5, rel=1e-9)
    assert Counting.drawn == 5 * 180 and found["fd_sd"] > 0
    assert "mean over 5 seeded random halvings" in found["protocol"]
    one = evaluate(context(tmp_path, cache, Untouched()), halvings=1)
    assert one["fd_real"] == pytest.approx(floors[0], rel=1e-9) and one["fd_sd"] == 0.0


def test_samples_of_one_class_cover_a_tenth(tmp_path, cache):
    train = digits("train")
    threes = train.images[train.labels == 3]
    found = evaluate(context(tmp_path, cache, Replay(threes)))
    assert found["coverage"] == pytest.approx(0.1, abs=0.03)
    assert found["fraction/3"] > 0.9 and found["confidence"] > 0.8
    assert found["fd_ratio"] > 5  # one class is far from the test split's mix of ten


def test_a_conditional_model_whose_samples_are_their_class_carries_its_condition(tmp_path, cache):
    train = digits("train")
    ctx = context(tmp_path, cache, RightClass(train), dataset=train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        found = quality.ClassifierQuality(train_steps=300).evaluate(ctx)  # train and test sets: the run's digits
    assert found["carries_condition"] >= 0.95 and found["chance"] == 0.1
    assert all(found[f"carries/{d}"] >= 0.8 for d in range(10))
    assert found["coverage"] > 0.95 and found["fd"] < found["fd_noise"] / 10  # training images, which the classifier was fit to
    assert "spread evenly over the classes" in found["protocol"]


def test_wrong_shapes_and_missing_labels_are_clear_errors(tmp_path, cache):
    bigger = digits("train", image_size=16).images[:10]
    with pytest.raises(EbmkitError, match=r"samples are images of shape \(1, 16, 16\), the test set's \(1, 8, 8\)"):
        evaluate(context(tmp_path, cache, Replay(bigger)))
    with pytest.raises(EbmkitError, match="this run's data has no labels: give train_set"):
        quality.ClassifierQuality().evaluate(context(tmp_path, cache, Untouched()))
    with pytest.raises(EbmkitError, match="num_samples = 500.*half B of the test split, 180 images"):
        evaluate(context(tmp_path, cache, Untouched()), num_samples=500)
    with pytest.raises(EbmkitError, match="test_set must be labelled"):
        evaluate(context(tmp_path, cache, Untouched()), test_set=digits("test", conditional=False))


def test_a_one_channel_sample_grid_is_scaled_up_with_visible_padding(tmp_path):
    from PIL import Image

    from ebmkit.plugins.images.sample_grid import SampleGrid

    train = digits("train", conditional=False)
    ctx = EvalContext(lambda x, cond=None: x.flatten(1).sum(1), train, Replay(train.images), None, tmp_path, 3, torch.device("cpu"))
    ctx.noise = chain_starts(train.sample_shape, train.domain)
    SampleGrid(num_samples=4, nrow=2, source="noise").evaluate(ctx)
    image = Image.open(tmp_path / "samples_step0000003.png")
    assert image.size == (2 * 64 + 3 * 4, 2 * 64 + 3 * 4)  # 8 px shown at 64 px (x8), 4 px padding
    assert image.convert("L").getpixel((1, 1)) == 128  # the padding is grey, not the digits' black
    SampleGrid(num_samples=4, nrow=2, source="noise", scale=1).evaluate(ctx)
    assert Image.open(tmp_path / "samples_step0000003.png").size == (2 * 8 + 3 * 2, 2 * 8 + 3 * 2)


def test_one_channel_images_go_through_fid_with_stand_in_features(tmp_path, monkeypatch):
    from ebmkit.plugins.images.fidelity import FID

    monkeypatch.setenv("EBMKIT_CACHE_DIR", str(tmp_path / "cache"))
    reference = digits("test", conditional=False)
    fid = FID(num_samples=40, batch_size=20, features="stand_in", reference=reference, num_reference=40)
    ctx = context(tmp_path, tmp_path, Replay(torch.stack([reference[i] for i in range(40)])), dataset=reference)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        same = fid.evaluate(ctx)["fid"]
        noise = fid.evaluate(context(tmp_path, tmp_path, Untouched(), dataset=reference))["fid"]
    assert 0 <= same < noise and math.isfinite(noise)
    assert len(list((tmp_path / "cache" / "fidelity").glob("digits-8x8-40-stand_in-*.safetensors"))) == 1


def test_one_channel_images_go_through_ood(tmp_path):
    from ebmkit.plugins.images.ood import OODDetection

    data = digits("train", conditional=False)
    ctx = EvalContext(lambda x, cond=None: x.square().flatten(1).mean(1), data, None, None, tmp_path, 0, torch.device("cpu"))
    ood = OODDetection(test_set={"name": "digits", "split": "test"},
                       ood_sets=[{"name": "uniform_noise", "size": 50, "image_size": SIZE, "channels": 1}], num_samples=50, plot=True)
    found = ood.evaluate(ctx)
    assert found["auroc/uniform_noise"] > 0.9 and (tmp_path / "ood_step0000000.png").exists()
