"""The command line: listings, user errors (exit 2, no traceback) and a short run."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import RECIPES


def test_list_shows_langevin_and_its_plugin(run_cli):
    result = run_cli("list", "transitions")
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if line.startswith("langevin"))
    assert "mcmc" in row


def test_list_with_params_and_pattern(run_cli):
    result = run_cli("list", "datasets", "*gauss*", "--params")
    assert "8gaussians" in result.output and "25gaussians" in result.output and "moons" not in result.output
    assert "size: int = 50000" in result.output


def test_plugins_lists_the_distribution(run_cli):
    result = run_cli("plugins", "--json")
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["mcmc"]["distribution"] == "ebmkit" and rows["mcmc"]["components"]["transitions"] >= 1


def test_misspelled_recipe_exits_2_without_traceback(tmp_path):
    text = (RECIPES / "quickstart.toml").read_text().replace('name = "langevin"', 'name = "langvin"')
    path = tmp_path / "typo.toml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "ebmkit.cli", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "sampler.transitions[0].name" in proc.stderr and "did you mean 'langevin'?" in proc.stderr
    assert "available transitions:" in proc.stderr


def test_unknown_kind_and_missing_file_exit_2(run_cli, tmp_path):
    assert run_cli("list", "samplrs").exit_code == 2
    result = run_cli("validate", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2 and "recipe not found" in result.output


def test_validate_reports_ok(run_cli):
    result = run_cli("validate", str(RECIPES / "quickstart.toml"))
    assert result.exit_code == 0 and "OK" in result.output


def test_run_writes_a_run_folder(run_cli, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "run", str(RECIPES / "quickstart.toml"), "--out", str(out),
        "--set", "train.steps=4", "--set", "train.log_every=2", "--set", "data.size=1024",
        "--set", "evaluators.0.bins=20", "--set", "evaluators.0.num_samples=50",
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == [2, 4]
    assert {"e_pos", "e_neg", "steps_per_s"} <= set(lines[1])
    assert any("density2d/grid_kl" in line for line in lines)
    assert (out / "checkpoints" / "step_0000004" / "energy.safetensors").exists()
    assert sorted(p.name for p in out.glob("density2d_step*.png")) == ["density2d_step0000000.png", "density2d_step0000004.png"]
    assert "steps = 4" in (out / "recipe.toml").read_text()
