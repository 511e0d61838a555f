"""The transformed dataset: another dataset's images made grey, blurred or inverted (OOD sets from in-distribution data)."""

from __future__ import annotations

import pytest
import torch

import ebmkit
from ebmkit import EbmkitError
from ebmkit.plugins.images.shapes import Shapes
from ebmkit.plugins.images.synthetic_ood import UniformNoise
from ebmkit.plugins.images.transformed import LUMA, TransformedImages, gaussian_blur


def noise_table(**params) -> dict:
    return {"name": "uniform_noise", "size": 6, "image_size": 8, "channels": 1, "seed": 3, **params}


def test_invert_maps_each_pixel_to_one_minus_it():
    source = UniformNoise(size=6, image_size=8, channels=1, seed=3)
    inverted = ebmkit.create("dataset", "transformed", dataset=noise_table(), invert=True)
    assert inverted.sample_shape == (1, 8, 8) and len(inverted) == 6 and inverted.domain == (0.0, 1.0)
    for i in range(len(source)):
        assert torch.allclose(inverted[i], 1 - source[i])


def test_invert_uses_the_datasets_domain():
    class Signed(UniformNoise):
        domain = (-1.0, 1.0)

    source = Signed(size=2, image_size=4, channels=1)
    assert torch.allclose(TransformedImages(dataset=source, invert=True)[0], -source[0])


def test_blur_is_a_gaussian_filter_with_edges_extended():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    source = UniformNoise(size=2, image_size=8, channels=1, seed=5)
    blurred = TransformedImages(dataset=source, blur=1.0)[1]
    # scipy's filter at sigma 1, truncated at 3 sigma, edges extended ("nearest")
    expected = scipy_ndimage.gaussian_filter(source[1][0].double().numpy(), sigma=1.0, mode="nearest", truncate=3.0)
    assert torch.allclose(blurred[0].double(), torch.from_numpy(expected), atol=1e-6)


def test_blur_keeps_a_flat_image_flat_and_spreads_a_point():
    flat = torch.full((1, 8, 8), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat, atol=1e-6)
    point = torch.zeros(1, 9, 9)
    point[0, 4, 4] = 1.0
    spread = gaussian_blur(point, 1.0)[0]
    assert spread.sum() == pytest.approx(1.0, abs=1e-6) and spread[4, 4] < 0.2 and spread[4, 5] == pytest.approx(spread[5, 4])
    assert spread[4, 5] / spread[4, 4] == pytest.approx(torch.exp(torch.tensor(-0.5)).item(), rel=1e-5)


def test_grey_takes_the_luma_of_colour_images():
    shapes = Shapes(size=4, image_size=8, seed=2, dequantize=False)
    grey = TransformedImages(dataset=shapes, grey=True)
    assert grey.sample_shape == (1, 8, 8)
    expected = torch.einsum("c,chw->hw", torch.tensor(LUMA), shapes[0])
    assert torch.allclose(grey[0][0], expected)


def test_labels_pass_through():
    shapes = Shapes(size=4, image_size=8, seed=2, label="shape", dequantize=False)
    grey = TransformedImages(dataset=shapes, grey=True, invert=True)
    assert grey.num_classes == 3 and grey.conditioning == shapes.conditioning
    x, y = grey[1]
    assert int(y) == int(shapes[1][1]) and x.shape == (1, 8, 8)


@pytest.mark.parametrize("params, message", [
    ({"dataset": noise_table()}, "would change nothing"),
    ({"invert": True}, "missing required parameter 'dataset'"),
    ({"dataset": noise_table(channels=2), "grey": True}, "one or three"),
    ({"dataset": noise_table(), "blur": -1.0}, "blur"),
])
def test_bad_settings_are_refused_with_a_clear_message(params, message):
    with pytest.raises(EbmkitError, match=message):
        ebmkit.create("dataset", "transformed", **params)


def test_invert_needs_a_domain():
    class Unbounded(UniformNoise):
        domain = None

    with pytest.raises(EbmkitError, match="declares none"):
        TransformedImages(dataset=Unbounded(size=2, image_size=4, channels=1), invert=True)
