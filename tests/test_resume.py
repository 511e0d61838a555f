"""Runs that survive: exact resume after kills at any moment, atomic checkpoints, divergence
rollback, checkpoints that are never unpickled, and the resume command line."""

from __future__ import annotations

import json
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

import ebmkit
from ebmkit._engine.checkpoint import CheckpointError, list_checkpoints, read_state
from ebmkit._host.errors import EbmkitError, TrainingDiverged
from ebmkit._engine.loop import train
from ebmkit._recipes.recipe import load
from tests.conftest import load_benchmark, plugin_env, read_metrics

_soak = load_benchmark("soak_resume")
#: the highest step logged in a run folder (-1 before any), as the soak script reads it
_steps_logged = _soak.steps_logged

#: A small quickstart: replay buffer, EMA, Adam, an evaluator; every update logged.
TINY = """
[run]
seed = 3
threads = 1

[data]
name = "8gaussians"
size = 2000

[energy]
name = "mlp"
hidden = 32
depth = 2

[sampler]
name = "chain"
steps = 5

[[sampler.transitions]]
name = "langevin"
step_size = 0.03

[buffer]
name = "replay"
capacity = 500
reinit_prob = 0.2

[[losses]]
name = "cd"

[[losses]]
name = "energy_l2"
weight = 0.1

[optim]
name = "adam"
lr = 2e-3
betas = [0.0, 0.999]

[train]
steps = 80
batch_size = 64
log_every = 1
checkpoint_every = 3
keep_checkpoints = 2
ema = 0.9

[[evaluators]]
name = "density2d"
every = 25
plot = false
"""

#: Kills its own process while a checkpoint is being written (its files are in the temporary
#: folder, not yet renamed into place), once per switch file: the soak script's plugin.
KILL_SWITCH = _soak.KILL_SWITCH

#: A loss term that is NaN for a few calls: a divergence injected from outside ebmkit.
NAN_LOSS = """
import attrs
from ebmkit import hookimpl
from ebmkit._host.protocols import LossOutput, Needs

@attrs.define
class NanAt:
    at: int = 5
    times: int = 1
    calls: int = attrs.field(default=0, init=False)
    needs = Needs(negatives=False)

    def __call__(self, batch):
        self.calls += 1
        bad = self.at <= self.calls < self.at + self.times
        return LossOutput(batch.e_pos.mean() * 0 + (float("nan") if bad else 0.0))

@hookimpl
def ebmkit_register_losses(register):
    register("nan_at", NanAt)
"""

TIMINGS = ("train_s", "steps_per_s", "wall_s")


def _rows(folder: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in read_metrics(folder)]


def _final_tensors(folder: Path) -> dict[str, torch.Tensor]:
    checkpoint = list_checkpoints(folder)[-1]
    tensors = {f"energy.{k}": v for k, v in safetensors.torch.load_file(str(checkpoint / "energy.safetensors")).items()}
    tensors |= {f"ema.{k}": v for k, v in safetensors.torch.load_file(str(checkpoint / "ema.safetensors")).items()}
    return tensors | safetensors.torch.load_file(str(checkpoint / "state.safetensors"))


def _ebmkit(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ebmkit", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_run_killed_at_random_moments_and_resumed_ends_bitwise_identical(tmp_path, install_plugin):
    install_plugin("kill-switch", "kill_switch", KILL_SWITCH)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY.replace("steps = 80", "steps = 200"))  # long enough for every kill to land mid-run
    env = plugin_env(install_plugin.root) | {"KILL_SWITCH": str(tmp_path / "kill-now")}

    whole = _ebmkit("run", str(recipe), "--out", str(tmp_path / "whole"), env=env)
    assert whole.wait(timeout=120) == 0, whole.stderr.read()

    folder, rng = tmp_path / "killed", random.Random(0)
    moments = ["random", "while writing a checkpoint"]  # (benchmarks/soak_resume.py kills a hundred times)
    rng.shuffle(moments)
    killed = {"random": 0, "while writing a checkpoint": 0}
    command = ["run", str(recipe), "--out", str(folder)]
    for moment in moments:
        if moment != "random":
            (tmp_path / "kill-now").touch()
        before = _steps_logged(folder)
        process = _ebmkit(*command, env=env)
        if moment == "random":
            deadline = time.monotonic() + 60
            while _steps_logged(folder) <= before and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.15))
            process.kill()
        code = process.wait(timeout=120)
        assert code in (0, -signal.SIGKILL), process.stderr.read()
        killed[moment] += code == -signal.SIGKILL
        command = ["run", "--resume", str(folder)]
        # Whatever the moment, every checkpoint left is complete and loads.
        for checkpoint in list_checkpoints(folder):
            assert ebmkit.load(checkpoint)(torch.zeros(2, 2)).isfinite().all()
            read_state(checkpoint)
        if code == 0:
            break
    assert killed["random"] >= 1 and killed["while writing a checkpoint"] == 1, killed
    final = _ebmkit(*command, env=env)
    assert final.wait(timeout=120) == 0, final.stderr.read()

    expected, got = _final_tensors(tmp_path / "whole"), _final_tensors(folder)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # Every step logged once, with the very same values.
    assert _rows(folder) == _rows(tmp_path / "whole")
    assert not list((folder / "checkpoints").glob(".tmp-*"))
    assert len(list_checkpoints(folder)) == 2  # keep_checkpoints


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_writes_a_checkpoint_prints_the_resume_command_and_exits_130(tmp_path, sig):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY.replace("steps = 80", "steps = 100000"))
    folder = tmp_path / "run"
    process = _ebmkit("run", str(recipe), "--out", str(folder), env=plugin_env())
    deadline = time.monotonic() + 60
    while _steps_logged(folder) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(sig)
    assert process.wait(timeout=60) == 130
    message = process.stderr.read()
    assert f"ebmkit run --resume {folder}" in message and "Traceback" not in message
    latest = list_checkpoints(folder)[-1]
    events = [row for row in read_metrics(folder) if row.get("event") == "interrupted"]
    assert events and events[-1]["signal"] == sig.name and events[-1]["step"] == read_state(latest)["step"]


def _tiny(tmp_path: Path, registries, *overrides: str):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return load(path, ["evaluators=[]", "train.steps=20", *overrides], registries)


def test_a_rollback_restores_the_last_checkpoint_lowers_the_rate_and_completes(tmp_path, install_plugin):
    registries = install_plugin("nan-loss", "nan_loss", NAN_LOSS)
    nan = '{name = "nan_at", at = 8}'
    recipe = _tiny(tmp_path, registries, f"losses=[{{name = \"cd\"}}, {nan}]", "train.checkpoint_every=5",
                   'train.on_divergence.action="rollback"', "train.on_divergence.lr_scale=0.5", "train.keep_checkpoints=10")
    train(recipe, tmp_path / "run", live=False, registries=registries)
    rows = read_metrics(tmp_path / "run")
    events = [row for row in rows if "event" in row]
    assert [(e["event"], e["step"], e["diverged_at"], e["retry"]) for e in events] == [("rollback", 5, 8, 1)]
    assert events[0]["lr"] == [1e-3] and "not all finite" in events[0]["reason"]
    steps = [row["step"] for row in rows if "loss" in row]
    assert steps == list(range(1, 21))  # the diverged attempt's lines were dropped
    assert all(row["loss"] == row["loss"] for row in rows if "loss" in row)  # no NaN kept
    final = list_checkpoints(tmp_path / "run")[-1]
    state = read_state(final)
    assert state["step"] == 20 and state["retries"] == 1 and state["optimizer"]["param_groups"][0]["lr"] == 1e-3
    assert (tmp_path / "run" / "checkpoints" / "step_0000005-retry1").is_dir()


def test_divergence_stops_the_run_with_a_message_when_asked_or_when_retries_run_out(tmp_path, install_plugin, run_cli):
    registries = install_plugin("nan-loss", "nan_loss", NAN_LOSS)
    stop = _tiny(tmp_path, registries, 'losses=[{name = "cd"}, {name = "nan_at", at = 4}]')
    with pytest.raises(TrainingDiverged, match=r"diverged at step 4.*on_divergence\] action = \"rollback\""):
        train(stop, tmp_path / "stop", live=False, registries=registries)
    assert [row["event"] for row in read_metrics(tmp_path / "stop") if "event" in row] == ["diverged"]

    always = _tiny(tmp_path, registries, 'losses=[{name = "cd"}, {name = "nan_at", at = 4, times = 1000}]',
                   'train.on_divergence.action="rollback"', "train.on_divergence.max_retries=2")
    with pytest.raises(TrainingDiverged, match="already rolled back 2 time"):
        train(always, tmp_path / "always", live=False, registries=registries)
    events = [(row["event"], row.get("retry")) for row in read_metrics(tmp_path / "always") if "event" in row]
    assert events == [("rollback", 1), ("rollback", 2), ("diverged", None)]

    (tmp_path / "cli.toml").write_text(TINY.replace('name = "energy_l2"', 'name = "nan_at"\nat = 2'))
    result = run_cli("run", str(tmp_path / "cli.toml"), "--out", str(tmp_path / "cli"), "--set", "evaluators=[]")
    assert result.exit_code == 2 and "training diverged at step 2" in result.output and "Traceback" not in result.output


def test_non_finite_weights_are_never_written(tmp_path, registries):
    from ebmkit._engine.checkpoint import save_checkpoint
    from ebmkit._engine.run import setup

    run = setup(_tiny(tmp_path, registries), tmp_path / "run", live=False, registries=registries)
    with torch.no_grad():
        next(run.state.energy.parameters())[0] = float("inf")
    with pytest.raises(TrainingDiverged, match="not finite"):
        save_checkpoint(run)
    assert list_checkpoints(tmp_path / "run") == [] and not list((tmp_path / "run" / "checkpoints").glob("*"))


class _Payload:
    """Unpickling this creates a file: proof that a payload ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("disguise", ["energy.safetensors", "state.safetensors", "model.pt"])
def test_a_pickle_is_refused_and_its_payload_never_runs(tmp_path, registries, run_cli, disguise):
    recipe = _tiny(tmp_path, registries, "train.steps=3", "train.checkpoint_every=0")
    train(recipe, tmp_path / "run", live=False, registries=registries)
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    proof = tmp_path / "payload-ran"
    assert pickle.loads(pickle.dumps(_Payload(proof))) is None and proof.exists()  # the payload works...
    proof.unlink()
    payload = pickle.dumps(_Payload(proof))
    if disguise == "model.pt":
        target = tmp_path / "model.pt"
        target.write_bytes(payload)
        with pytest.raises(CheckpointError, match="pickle"):
            ebmkit.load(target)
    else:
        (checkpoint / disguise).write_bytes(payload)
        if disguise == "energy.safetensors":
            with pytest.raises(CheckpointError, match="pickle"):
                ebmkit.load(tmp_path / "run", ema=False)
        result = run_cli("run", "--resume", str(tmp_path / "run"), "--set", "train.steps=6")
        assert result.exit_code == 2 and "never unpickles" in result.output and "Traceback" not in result.output
    assert not proof.exists()  # ...and never ran


def test_an_unknown_checkpoint_format_is_a_clear_error(tmp_path, registries, run_cli):
    train(_tiny(tmp_path, registries, "train.steps=2"), tmp_path / "run", live=False, registries=registries)
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    meta = json.loads((checkpoint / "meta.json").read_text())
    (checkpoint / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(CheckpointError, match="format 99; this ebmkit reads formats 2, 3"):
        ebmkit.load(checkpoint)
    result = run_cli("run", "--resume", str(tmp_path / "run"), "--set", "train.steps=4")
    assert result.exit_code == 2 and "format 99" in result.output


def test_resume_continues_exactly_and_may_only_extend_the_run(tmp_path, registries, run_cli):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    common = ["--set", "evaluators=[]", "--set", "train.checkpoint_every=4"]
    assert run_cli("run", str(path), "--out", str(tmp_path / "whole"), "--set", "train.steps=12", *common).exit_code == 0
    assert run_cli("run", str(path), "--out", str(tmp_path / "half"), "--set", "train.steps=6", *common).exit_code == 0
    # --out on a folder that holds a run is refused; --resume may extend it, not change the model.
    again = run_cli("run", str(path), "--out", str(tmp_path / "half"))
    assert again.exit_code == 2 and "already holds a run" in again.output and "--resume" in again.output
    changed = run_cli("run", "--resume", str(tmp_path / "half"), "--set", "energy.hidden=16", "--set", "train.batch_size=8")
    assert changed.exit_code == 2 and "train.batch_size, energy.hidden" in changed.output
    assert run_cli("run", "--resume", str(tmp_path / "half"), "--set", "train.steps=12").exit_code == 0
    expected, got = _final_tensors(tmp_path / "whole"), _final_tensors(tmp_path / "half")
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    training = [row for row in _rows(tmp_path / "half") if "loss" in row]
    assert training == [row for row in _rows(tmp_path / "whole") if "loss" in row]
    assert "steps = 12" in (tmp_path / "half" / "recipe.toml").read_text()
    assert (tmp_path / "half" / "recipe.toml").read_text().startswith(f"# resolved from {path}")


def test_a_run_folder_without_a_checkpoint_resumes_from_step_zero(tmp_path, registries, run_cli):
    from ebmkit._engine.run import setup

    recipe = _tiny(tmp_path, registries, "train.steps=4")
    setup(recipe, tmp_path / "run", live=False, registries=registries)  # as if killed before the first checkpoint
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 0, "density2d/grid_kl": 1.0}\n{"step": 3, "lo')
    result = run_cli("run", "--resume", str(tmp_path / "run"))
    assert result.exit_code == 0 and "starting from step 0" in result.output
    assert [row["step"] for row in read_metrics(tmp_path / "run") if "loss" in row] == [1, 2, 3, 4]
    assert not any("density2d/grid_kl" in row for row in read_metrics(tmp_path / "run"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--resume", "{tmp}/nowhere"], "no such run folder"),
        (["--resume", "{tmp}"], "not a run folder"),
        (["--resume", "{tmp}/run", "{tmp}/tiny.toml"], "give no RECIPE and no --out"),
        ([], "missing RECIPE"),
        (["--resume", "{tmp}/run", "--set", "train.steps=1"], "past [train].steps = 1"),
    ],
)
def test_resume_mistakes_exit_2_with_a_message(tmp_path, registries, run_cli, args, expected):
    (tmp_path / "tiny.toml").write_text(TINY)
    train(_tiny(tmp_path, registries, "train.steps=3"), tmp_path / "run", live=False, registries=registries)
    result = run_cli("run", *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_a_checkpoint_holds_the_whole_run_state(tmp_path, registries):
    """The state written equals the state in memory, down to the optimizer's integer keys and tuples."""
    from ebmkit._engine.checkpoint import restore_checkpoint, save_checkpoint
    from ebmkit._engine.loop import Trainer
    from ebmkit._engine.run import setup

    run = setup(_tiny(tmp_path, registries, "train.steps=5"), tmp_path / "run", live=False, registries=registries)
    trainer = Trainer(run)
    for _ in range(5):
        trainer.update()
    folder = save_checkpoint(run)
    in_memory = run.state.state_dict()
    fresh = setup(_tiny(tmp_path, registries, "train.steps=5"), tmp_path / "other", live=False, registries=registries)
    restore_checkpoint(fresh, folder)
    restored = fresh.state.state_dict()
    assert restored["optimizer"]["param_groups"][0]["betas"] == (0.0, 0.999)
    assert set(restored["optimizer"]["state"]) == set(in_memory["optimizer"]["state"]) == set(range(6))

    def same(a, b):
        if isinstance(a, torch.Tensor):
            return torch.equal(a, b)
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list | tuple):
            return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
        return a == b

    assert same(in_memory, restored)
    assert int(restored["components"]["buffer"]["size"]) == 5 * 64


def test_a_state_that_cannot_be_saved_names_where_it_is(registries):
    from ebmkit._engine.checkpoint import split_state

    with pytest.raises(EbmkitError, match=r"state.components.buffer.gen is a Generator"):
        split_state({"components": {"buffer": {"gen": torch.Generator()}}})


def test_a_checkpoint_survives_a_round_trip_through_json_exactly():
    from ebmkit._engine.checkpoint import join_state, split_state

    state = {"a": (1, 2.5, None), "b": {0: torch.arange(3), 1: [True, "x"]}, "c": float("inf"), "d": 0.1 + 0.2}
    data, tensors = split_state(state)
    back = join_state(json.loads(json.dumps(data)), tensors)
    assert back["a"] == (1, 2.5, None) and back["b"][1] == [True, "x"] and back["c"] == float("inf")
    assert torch.equal(back["b"][0], torch.arange(3)) and back["d"] == 0.1 + 0.2


def test_a_signal_during_the_last_update_lets_the_run_finish(tmp_path, registries):
    from ebmkit._engine.loop import Trainer
    from ebmkit._engine.run import setup

    recipe = _tiny(tmp_path, registries, "train.steps=1", 'evaluators=[{name = "density2d", bins = 10, num_test = 50, plot = false}]')
    trainer = Trainer(setup(recipe, tmp_path / "run", live=False, registries=registries))
    trainer.interrupted = signal.SIGINT  # as if Ctrl-C came during the only update
    trainer.fit()
    rows = read_metrics(tmp_path / "run")
    assert not any(row.get("event") == "interrupted" for row in rows)
    assert [row["step"] for row in rows if "density2d/grid_kl" in row] == [0, 1] and rows[-1]["updates"] == 1


def test_a_refused_resume_changes_nothing_in_the_folder(tmp_path, registries, run_cli):
    train(_tiny(tmp_path, registries, "train.steps=3"), tmp_path / "run", live=False, registries=registries)
    before = {name: (tmp_path / "run" / name).read_text() for name in ("recipe.toml", "run.json", "metrics.jsonl")}
    assert run_cli("run", "--resume", str(tmp_path / "run"), "--set", "train.steps=1").exit_code == 2
    assert before == {name: (tmp_path / "run" / name).read_text() for name in before}
    result = run_cli("run", "--resume", str(tmp_path / "run"), "--set", "train.steps=4")
    assert result.exit_code == 0 and [row["step"] for row in read_metrics(tmp_path / "run") if "loss" in row] == [1, 2, 3, 4]


def test_resuming_from_the_first_checkpoint_does_not_evaluate_the_start_again(tmp_path, registries, run_cli):
    evaluator = 'evaluators=[{name = "density2d", bins = 10, num_test = 50, plot = false}]'
    recipe = _tiny(tmp_path, registries, "train.steps=0", evaluator, 'train.on_divergence.action="rollback"')
    train(recipe, tmp_path / "run", live=False, registries=registries)  # writes step_0000000 (a rollback target)
    assert run_cli("run", "--resume", str(tmp_path / "run"), "--set", "train.steps=2").exit_code == 0
    evaluated = [row["step"] for row in read_metrics(tmp_path / "run") if "density2d/grid_kl" in row]
    assert evaluated == [0, 0, 2]  # start and end of the 0-step run, end of the resumed one


def test_a_run_out_of_time_is_complete(tmp_path, registries, run_cli):
    train(_tiny(tmp_path, registries, "train.time_limit_s=1e-9"), tmp_path / "run", live=False, registries=registries)
    result = run_cli("run", "--resume", str(tmp_path / "run"))
    assert result.exit_code == 0 and "is complete (1 updates)" in result.output and "time_limit_s" in result.output
    assert [row["step"] for row in read_metrics(tmp_path / "run") if "loss" in row] == [1]


def _drop_a_tensor(checkpoint: Path) -> None:
    tensors = safetensors.torch.load_file(str(checkpoint / "state.safetensors"))
    tensors.pop(sorted(tensors)[0])
    safetensors.torch.save_file(tensors, str(checkpoint / "state.safetensors"))


def _edit_json(name: str, change):
    def edit(checkpoint: Path) -> None:
        path = checkpoint / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return edit


@pytest.mark.parametrize(
    ("damage", "resume_exit", "load_error"),
    [
        (_drop_a_tensor, 2, None),
        (_edit_json("state.json", lambda state: {**state, "step": None}), 2, None),
        (_edit_json("state.json", lambda state: list(state)), 2, None),
        (_edit_json("meta.json", lambda meta: {**meta, "energy": {**meta["energy"], "params": [1, 2]}}), 0, "does not record the energy"),
        (lambda checkpoint: (checkpoint / "state.json").write_text("{not json"), 2, None),
        (lambda checkpoint: (checkpoint / "energy.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "), 2, None),
    ],
    ids=["tensor-missing", "step-null", "state-a-list", "energy-params-a-list", "state-not-json", "weights-empty"],
)
def test_a_damaged_checkpoint_is_a_clear_error(tmp_path, registries, run_cli, damage, resume_exit, load_error):
    """Resume reads the run state, ebmkit.load the energy's record (with the EMA weights): each
    refuses what it needs when that is damaged, and only that."""
    train(_tiny(tmp_path, registries, "train.steps=2"), tmp_path / "run", live=False, registries=registries)
    damage(list_checkpoints(tmp_path / "run")[-1])
    if load_error is None:
        ebmkit.load(tmp_path / "run")
    else:
        with pytest.raises(CheckpointError, match=load_error):
            ebmkit.load(tmp_path / "run")
    result = run_cli("run", "--resume", str(tmp_path / "run"), "--set", "train.steps=4")
    assert result.exit_code == resume_exit and "Traceback" not in result.output, result.output
    if resume_exit == 2:
        assert "checkpoints/step_0000002" in result.output.replace("\n", "")


def test_a_run_folder_in_use_is_refused(tmp_path, registries, run_cli):
    from ebmkit._engine.run import lock_run_folder

    train(_tiny(tmp_path, registries, "train.steps=2"), tmp_path / "run", live=False, registries=registries)
    lock = lock_run_folder(tmp_path / "run")  # as another process training in it would hold
    try:
        result = run_cli("run", "--resume", str(tmp_path / "run"), "--set", "train.steps=4")
    finally:
        lock.close()
    assert result.exit_code == 2 and "in use by another ebmkit process" in result.output
    assert run_cli("run", "--resume", str(tmp_path / "run"), "--set", "train.steps=4").exit_code == 0


def test_resume_auto_starts_a_run_then_continues_it_exactly(tmp_path, registries, run_cli):
    """The command line a requeued job runs again: --resume auto starts the run when --out holds
    none and continues it when it does; a run of another recipe there is refused."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    common = ["--set", "evaluators=[]", "--set", "train.checkpoint_every=4"]
    assert run_cli("run", str(path), "--out", str(tmp_path / "whole"), "--set", "train.steps=12", *common).exit_code == 0
    auto = ["run", str(path), "--out", str(tmp_path / "auto"), "--resume", "auto", *common]
    first = run_cli(*auto, "--set", "train.steps=6")
    assert first.exit_code == 0 and "resuming" not in first.output
    again = run_cli(*auto, "--set", "train.steps=12")
    assert again.exit_code == 0 and "resuming from step 6" in again.output
    expected, got = _final_tensors(tmp_path / "whole"), _final_tensors(tmp_path / "auto")
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert [row for row in _rows(tmp_path / "auto") if "loss" in row] == [row for row in _rows(tmp_path / "whole") if "loss" in row]
    done = run_cli(*auto, "--set", "train.steps=12")
    assert done.exit_code == 0 and "is complete (12 updates)" in done.output

    other = run_cli(*auto, "--set", "train.steps=12", "--set", "energy.hidden=16")
    assert other.exit_code == 2 and "holds a run of another recipe (energy.hidden differ)" in other.output
    assert run_cli("run", "--resume", "auto", "--out", str(tmp_path / "x")).exit_code == 2  # auto needs the RECIPE
    missing = run_cli("run", str(path), "--resume", "auto")
    assert missing.exit_code == 2 and "--resume auto needs RECIPE and --out" in missing.output


def test_a_checkpoint_by_wall_clock_time_is_replaced_by_the_next(tmp_path, registries, monkeypatch):
    """[train].checkpoint_every_minutes: a checkpoint once that many minutes passed since the last
    one (here a clock that advances 20 s whenever the loop reads it); each is removed when the
    next checkpoint lands, while the scheduled ones stay."""
    import types

    from ebmkit._engine import checkpoint as checkpoint_module
    from ebmkit._engine import loop

    now = [0.0]

    def monotonic() -> float:
        now[0] += 20.0
        return now[0]

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=time.perf_counter, monotonic=monotonic))
    written = []
    save = checkpoint_module.save_checkpoint

    def recording(run, before_rename=None, replaceable=False):
        written.append((run.state.step, replaceable))
        return save(run, before_rename, replaceable)

    monkeypatch.setattr(loop, "save_checkpoint", recording)
    recipe = _tiny(tmp_path, registries, "train.steps=10", "train.checkpoint_every=5", "train.checkpoint_every_minutes=1")
    train(recipe, tmp_path / "run", live=False, registries=registries)
    # 60 s pass at updates 3 and 8 (the clock is read once an update and once a checkpoint)
    assert written == [(3, True), (5, False), (8, True), (10, False)]
    assert [folder.name for folder in list_checkpoints(tmp_path / "run")] == ["step_0000005", "step_0000010"]

    # A run stopped right after a time checkpoint resumes from it, and it goes when the next lands.
    written.clear()
    recipe = _tiny(tmp_path, registries, "train.steps=4", "train.checkpoint_every=0", "train.checkpoint_every_minutes=1")
    train(recipe, tmp_path / "short", live=False, registries=registries)
    assert written == [(3, True), (4, False)] and [f.name for f in list_checkpoints(tmp_path / "short")] == ["step_0000004"]
