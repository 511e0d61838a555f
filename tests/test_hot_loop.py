"""The training loop does not wait for the device between logged updates: ebmkit's own code
reads a tensor's value (bool, float, item, tolist) once per update, for the divergence flag, and
the metrics of a logged update in one transfer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import ebmkit
from ebmkit.loop import Trainer
from ebmkit.recipe import load
from ebmkit.run import setup
from tests.conftest import RECIPES

OWN_CODE = (str(Path(ebmkit.__file__).parent), str(Path(__file__).parents[1] / "plugins"))
READS = ("__bool__", "__float__", "__int__", "item", "tolist")


@pytest.fixture
def count_reads(monkeypatch):
    """Counts reads of a tensor's value made directly from ebmkit's core or its plugins."""
    reads: list[str] = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(OWN_CODE):
                reads.append(f"{_name} in {Path(caller).name}:{sys._getframe(1).f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


@pytest.mark.parametrize("recipe", ["quickstart.toml", "improved_cd_8gaussians.toml"])
def test_an_update_reads_the_device_once_and_a_logged_update_once_more(recipe, tmp_path, count_reads):
    overrides = ["data.size=512", "evaluators=[]", "sampler.steps=3", "train.batch_size=64",
                 "train.log_every=4", "train.steps=8", "train.energy_bound=1e6"]
    trainer = Trainer(setup(load(RECIPES / recipe, overrides), tmp_path, live=False))
    for _ in range(2):  # warm up the code paths
        trainer.after_update(trainer.update())
    count_reads.clear()
    metrics = trainer.update()  # update 3, not logged
    assert len(count_reads) == 1, count_reads  # the divergence flag
    assert all(isinstance(v, torch.Tensor) for k, v in metrics.items() if k.startswith(("loss", "e_", "grad")))
    trainer.after_update(metrics)
    assert len(count_reads) == 1, count_reads
    count_reads.clear()
    trainer.after_update(trainer.update())  # update 4: logged
    assert len(count_reads) == 2, count_reads  # the flag, and every metric in one tolist
    assert 'tolist' in count_reads[1]
    assert isinstance(trainer.run.latest["loss"], float) and "sampler/energy" in trainer.run.latest
