"""Soak test of a two-rank run killed at random moments and re-launched with ``--resume auto``
(not part of the test suite: it takes 10-20 minutes on 2 cores).

One two-rank quickstart runs uninterrupted. The same command, under
``torchrun --standalone --nproc_per_node=2 --max-restarts=1000 ... --resume auto``, is then
killed again and again until it has survived ``--kills`` kills, each drawn from:

- ``job``: the torchrun agent and both workers killed with SIGKILL at a random moment (a
  pre-empted job, a lost node); the same command line is launched again;
- ``worker``: one worker, either rank, killed with SIGKILL at a random moment; torchrun's
  agent restarts the group, which resumes;
- ``checkpoint``: rank 0 kills itself with SIGKILL while it writes a checkpoint (its files are
  in the temporary folder, not yet renamed into place); torchrun restarts the group.

The run is then left to finish, and its final weights, EMA, every rank's run state and every
logged value must equal the uninterrupted run's, bit for bit.

    python benchmarks/soak_resume.py --kills 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import safetensors.torch
import torch

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ("train_s", "steps_per_s", "wall_s")

#: Kills rank 0 while a checkpoint is being written, once per switch file (docs/resume.md).
KILL_SWITCH = '''
import os
import signal
from ebmkit import hookimpl

@hookimpl
def ebmkit_checkpoint_save(folder):
    switch = os.environ.get("KILL_SWITCH")
    if switch and os.path.exists(switch):
        os.unlink(switch)
        os.kill(os.getpid(), signal.SIGKILL)
'''


def install_kill_switch(site: Path) -> None:
    site.mkdir(parents=True, exist_ok=True)
    (site / "soak_kill_switch.py").write_text(KILL_SWITCH)
    info = site / "soak_kill_switch-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: soak-kill-switch\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ebmkit]\nsoak_kill_switch = soak_kill_switch\n")


def command(out: Path, steps: int, restarts: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", f"--max-restarts={restarts}",
            "-m", "ebmkit", "run", str(ROOT / "recipes" / "quickstart.toml"), "--out", str(out), "--resume", "auto",
            "--set", f"train.steps={steps}", "--set", "train.log_every=1", "--set", "train.checkpoint_every=5",
            "--set", "train.keep_checkpoints=2", "--set", "evaluators=[]", "--set", "run.threads=1"]


def launch(out: Path, steps: int, env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(command(out, steps, 1000), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def workers(agent: subprocess.Popen) -> dict[int, int]:
    """The agent's live workers: {rank: pid}."""
    found = {}
    for pid in subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True, text=True).stdout.split():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ranks = [entry[5:] for entry in environ if entry.startswith(b"RANK=")]
        if ranks:
            found[int(ranks[0])] = int(pid)
    return found


def steps_logged(out: Path) -> int:
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return -1
    steps = [-1]
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return max(steps)


def wait_for_progress(out: Path, agent: subprocess.Popen, timeout: float = 120) -> bool:
    """Until a step past the current one is logged; False when the agent ended first."""
    start, deadline = steps_logged(out), time.monotonic() + timeout
    while steps_logged(out) <= start:
        if agent.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def final_state(out: Path) -> dict[str, torch.Tensor]:
    checkpoint = sorted((out / "checkpoints").glob("step_*"))[-1]
    tensors = {}
    for file in sorted(checkpoint.glob("*.safetensors")):
        tensors |= {f"{file.name}:{k}": v for k, v in safetensors.torch.load_file(str(file)).items()}
    return tensors


def rows(out: Path) -> tuple[list[dict], list[dict]]:
    """The logged values (timings left out), and the events (an interrupted run records one)."""
    logged = [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [row for row in logged if "event" not in row], [row for row in logged if "event" in row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="ebmkit-soak-"))
    site, switch = folder / "site", folder / "kill-now"
    install_kill_switch(site)
    env = {k: v for k, v in os.environ.items() if k != "EBMKIT_DISABLE_PLUGIN_AUTOLOAD"}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(site), "KILL_SWITCH": str(switch)}
    started = time.monotonic()

    straight = folder / "straight"
    with open(folder / "straight.log", "w") as log:
        assert launch(straight, args.steps, env, log).wait() == 0, f"the uninterrupted run failed: see {folder / 'straight.log'}"
    print(f"uninterrupted run: {time.monotonic() - started:.0f} s", flush=True)

    out, kills = folder / "killed", {"job": 0, "worker": 0, "checkpoint": 0}
    log = open(folder / "killed.log", "w")
    agent = launch(out, args.steps, env, log)
    while sum(kills.values()) < args.kills:
        if agent.poll() is not None:
            if agent.returncode == 0:
                break  # finished before every kill was made: raise --steps
            agent = launch(out, args.steps, env, log)
        kind = rng.choice(list(kills))
        if kind == "checkpoint":
            switch.touch()
            deadline = time.monotonic() + 120
            while switch.exists() and agent.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if switch.exists():
                switch.unlink()
                continue
            kills[kind] += 1  # (torchrun restarts the group)
            continue
        if not wait_for_progress(out, agent):
            continue
        time.sleep(rng.uniform(0, 0.5))
        ranks = workers(agent)
        if kind == "worker" and ranks:
            os.kill(ranks[rng.choice(sorted(ranks))], signal.SIGKILL)
        else:
            kind = "job"
            for pid in [agent.pid, *ranks.values()]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            agent.wait()
        kills[kind] += 1
        print(f"{sum(kills.values())} kills {kills} at step {steps_logged(out)}, {time.monotonic() - started:.0f} s", flush=True)
    if agent.poll() is not None and agent.returncode != 0:
        agent = launch(out, args.steps, env, log)
    code = agent.wait()
    log.close()
    if code != 0:
        raise SystemExit(f"the killed run did not finish (exit {code}): see {folder / 'killed.log'}")

    expected, got = final_state(straight), final_state(out)
    same_tensors = expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    (logged, events), (expected_rows, _) = rows(out), rows(straight)
    same_rows = logged == expected_rows
    leftovers = list((out / "checkpoints").glob(".tmp-*"))
    result = {"kills": kills, "survived": sum(kills.values()), "steps": args.steps, "tensors_compared": len(expected),
              "bitwise_equal": same_tensors, "metrics_equal": same_rows, "events": [e["event"] for e in events], "temporary_folders_left": len(leftovers),
              "minutes": round((time.monotonic() - started) / 60, 1), "folder": str(folder)}
    print(json.dumps(result, indent=1))
    if not (same_tensors and same_rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
