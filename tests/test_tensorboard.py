"""TensorBoard logging ([run].tensorboard = true): a run's scalars, events and images, read back
with TensorBoard's own event reader."""

from __future__ import annotations

import shutil
import sys

import pytest
import tomli_w

from ebmkit._host.errors import EbmkitError
from ebmkit._engine.loop import train
from ebmkit._recipes.recipe import validate
from tests.conftest import read_metrics

pytest.importorskip("tensorboard")


def tiny_recipe(tensorboard: bool, steps: int = 3, **train_settings) -> dict:
    return {
        "run": {"seed": 0, "tensorboard": tensorboard},
        "data": {"name": "shapes", "size": 16, "image_size": 16},
        "energy": {"name": "resnet_ebm", "width": 8},
        "sampler": {"name": "chain", "steps": 2, "transitions": [{"name": "langevin", "step_size": 1.0, "noise_std": 0.01, "clamp": [0.0, 1.0]}]},
        "losses": [{"name": "cd"}],
        "optim": {"name": "adam", "lr": 0.001},
        "train": {"steps": steps, "batch_size": 4, "log_every": 1, "eval_at_start": False, **train_settings},
        "evaluators": [{"name": "sample_grid", "every": 2, "num_samples": 4, "nrow": 2, "source": "noise"}],
    }


def accumulate(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def check_scalars_match_metrics_jsonl(acc, folder):
    """Every value of metrics.jsonl is a scalar at its step, in the same order, and nothing more."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in read_metrics(folder):
        if "event" in row:
            continue
        for name, value in row.items():
            if name != "step":
                expected.setdefault(name, []).append((row["step"], value))
    tags = set(acc.Tags()["scalars"])
    assert set(expected) <= tags, f"missing scalars: {set(expected) - tags}"
    for name, rows in expected.items():
        events = acc.Scalars(name)
        assert [e.step for e in events] == [step for step, _ in rows], name
        for e, (_, value) in zip(events, rows, strict=True):  # TensorBoard keeps scalars as float32
            assert e.value == pytest.approx(value, rel=1e-6, abs=1e-6), (name, e.step)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tb") / "run"
    train(validate(tiny_recipe(True), "tb"), folder, live=False)
    return folder


def test_scalars_are_the_metrics_at_their_steps(trained):
    acc = accumulate(trained)
    check_scalars_match_metrics_jsonl(acc, trained)
    for name in ("loss", "e_pos", "e_neg", "loss/cd", "sample_grid/sample_energy"):
        assert name in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3]
    assert [e.step for e in acc.Scalars("sample_grid/sample_energy")] == [2, 3]


def test_sample_grids_are_an_image_series(trained):
    import io

    import numpy as np
    from PIL import Image

    acc = accumulate(trained)
    assert acc.Tags()["images"] == ["samples"]
    images = acc.Images("samples")
    assert [image.step for image in images] == [2, 3]
    for image in images:
        written = np.asarray(Image.open(trained / f"samples_step{image.step:07d}.png").convert("RGB"))
        shown = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        assert (image.height, image.width) == shown.shape[:2] == (134, 134)  # a 2 x 2 grid of 16 px shown at 64 px, 2 px padding
        np.testing.assert_array_equal(shown, written)


def test_off_writes_no_tensorboard_folder(tmp_path):
    folder = tmp_path / "run"
    train(validate(tiny_recipe(False, steps=2), "off"), folder, live=False)
    assert (folder / "metrics.jsonl").exists()
    assert not (folder / "tensorboard").exists()


def test_a_missing_tensorboard_package_says_how_to_install_it(tmp_path, monkeypatch, run_cli):
    # None in sys.modules makes the import fail, as it does when the package is not installed.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(EbmkitError, match=r"pip install ebmkit\[tensorboard\]"):
        train(validate(tiny_recipe(True, steps=1), "missing"), tmp_path / "api", live=False)

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(tomli_w.dumps(tiny_recipe(True, steps=1)))
    result = run_cli("run", str(recipe), "--out", str(tmp_path / "cli"))
    assert result.exit_code == 2
    assert "pip install ebmkit[tensorboard]" in result.output


def test_a_resumed_run_replaces_what_it_logged_after_its_checkpoint(tmp_path, run_cli):
    """Steps 3 and 4 were logged, but the run resumes from step 2: TensorBoard shows them once."""
    folder = tmp_path / "run"
    train(validate(tiny_recipe(True, steps=4, checkpoint_every=2), "resume"), folder, live=False)
    shutil.rmtree(folder / "checkpoints" / "step_0000004")  # as if killed before the last checkpoint
    result = run_cli("run", "--resume", str(folder))
    assert result.exit_code == 0, result.output
    acc = accumulate(folder)
    check_scalars_match_metrics_jsonl(acc, folder)
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]
    assert [image.step for image in acc.Images("samples")] == [2, 4]


def test_a_rollback_replaces_what_was_logged_after_the_restored_step(tmp_path):
    """The hooks as the loop calls them around a rollback to step 1 (diverging runs are slow to stage)."""
    from types import SimpleNamespace

    import ebmkit.plugins.tensorboard as plugin

    registered = {}
    run = SimpleNamespace(
        out_dir=tmp_path, recipe=SimpleNamespace(run_setting={"tensorboard": True}.get),
        state=SimpleNamespace(step=0), resumed=False, console=None,
        register=lambda obj, name: registered.setdefault(name, obj),
    )
    plugin.ebmkit_run_start(run)
    logger = registered["tensorboard"]  # the run's writer, registered for the run
    for step in (1, 2, 3):
        logger.ebmkit_log_metrics(step, {"loss": float(step)})
    run.state.step = 1
    logger.ebmkit_checkpoint_load(run)
    logger.ebmkit_event(1, {"event": "rollback", "message": "rolled back to step 1"})
    for step in (2, 3):
        logger.ebmkit_log_metrics(step, {"loss": -float(step)})
    logger.ebmkit_run_end()
    acc = accumulate(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 1.0), (2, -2.0), (3, -3.0)]
    assert [e.step for e in acc.Tensors("events/rollback/text_summary")] == [1]
