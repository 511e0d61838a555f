"""ebmkit sample RUN_DIR: samples from a trained run, with the run's own sampler, as a grid and as tensors."""

from __future__ import annotations

import json

import pytest
import safetensors
import safetensors.torch
import torch
from PIL import Image

import ebmkit


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """digits_parity (conditional on "even"/"odd", 8 px digits) after 3 updates, with an EMA."""
    from click.testing import CliRunner

    from ebmkit.cli import cli

    folder = tmp_path_factory.mktemp("sample") / "run"
    result = CliRunner().invoke(cli, ["run", "digits_parity", "--set", "train.steps=3", "--set", "evaluators=[]",
                                      "--set", "sampler.steps=3", "--out", str(folder)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder


def test_sample_writes_a_visible_grid_and_the_tensors_with_what_drew_them(digits_run, run_cli, tmp_path):
    out = tmp_path / "drawn"
    result = run_cli("sample", str(digits_run), "-n", "12", "--cond", "odd", "--seed", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "samples.png, samples.safetensors" in result.output
    samples = safetensors.torch.load_file(str(out / "samples.safetensors"))["samples"]
    assert samples.shape == (12, 1, 8, 8) and 0 <= samples.min() and samples.max() <= 1  # the recipe's clamp
    with safetensors.safe_open(str(out / "samples.safetensors"), "pt") as f:
        about = {k: json.loads(v) for k, v in f.metadata().items()}
    assert about["cond"] == "odd" and about["step"] == 3 and about["seed"] == 3 and about["ema"] is True
    assert about["sampler"]["steps"] == 3 and about["sampler"]["transitions"][0]["name"] == "langevin"
    width, height = Image.open(out / "samples.png").size
    assert width >= 3 * 64 and height >= 4 * 64  # 8 px digits scaled up to be seen, a square-ish grid (3 x 4)

    # The same draw from Python, writing nothing; another seed draws other samples.
    same = ebmkit.sample(digits_run, 12, cond="odd", seed=3)
    assert torch.equal(same, samples)
    assert not torch.equal(ebmkit.sample(digits_run, 12, cond="odd", seed=4), samples)
    assert not torch.equal(ebmkit.sample(digits_run, 12, cond="even", seed=3), samples)  # the class is used


def test_sample_defaults_to_a_folder_in_the_run_and_takes_the_samplers_settings(digits_run, run_cli):
    result = run_cli("sample", str(digits_run), "-n", "4", "--steps", "1", "--set", "sampler.transitions.0.step_size=0.5")
    assert result.exit_code == 0, result.output
    folder = digits_run / "samples" / "step0000003_seed0"
    with safetensors.safe_open(str(folder / "samples.safetensors"), "pt") as f:
        about = {k: json.loads(v) for k, v in f.metadata().items()}
    assert about["sampler"]["steps"] == 1 and about["sampler"]["transitions"][0]["step_size"] == 0.5
    assert about["cond"] is None


@pytest.mark.parametrize("args, named", [
    (["--cond", "od"], "did you mean 'odd'"),
    (["--set", "sampler.stepz=2"], "sampler.stepz"),
    (["--sampler", "chian"], "did you mean 'chain'"),
])
def test_bad_sample_settings_exit_2_with_a_clear_message(digits_run, run_cli, tmp_path, args, named):
    result = run_cli("sample", str(digits_run), "-n", "2", "--out", str(tmp_path / "x"), *args)
    assert result.exit_code == 2 and named in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_points_are_drawn_as_a_scatter_plot(run_cli, tmp_path):
    folder = tmp_path / "run"
    trained = run_cli("run", "quickstart", "--set", "train.steps=2", "--set", "evaluators=[]", "--set", "data.size=512",
                      "--out", str(folder))
    assert trained.exit_code == 0, trained.output
    assert run_cli("sample", str(folder), "-n", "50", "--out", str(tmp_path / "drawn")).exit_code == 0
    assert safetensors.torch.load_file(str(tmp_path / "drawn" / "samples.safetensors"))["samples"].shape == (50, 2)
    assert Image.open(tmp_path / "drawn" / "samples.png").size[0] > 100
