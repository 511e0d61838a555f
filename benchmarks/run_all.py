"""Every benchmark in one command: JSON in benchmarks/results/performance.json and the tables of
docs/performance.md.

Every figure is a ratio of variants timed side by side in this one run, interleaved over rounds
(the order rotating each round), with the minimum (the least disturbed run) and the median, the
absolute times beside them, and the machine and its load at the start and the end.

    python benchmarks/run_all.py [--rounds 5] [--device cpu] [--reference DIR] [--torchebm-path DIR]
                                 [--compile] [--only NAME ...] [--out-json P] [--out-md P]

--reference: a checkout of github.com/yilundu/improved_contrastive_divergence (outside this
repository; benchmarks/bench_reference.py says how to get it); without it the comparison with the
reference code is skipped. --torchebm-path: a folder torchebm is installed into (``pip install
--no-deps --target DIR torchebm``; never a dependency of ebmkit); without it that row is skipped.
--compile: also time torch.compile (its compilation takes minutes on a CPU; on CUDA it is always
timed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_mcmc  # noqa: E402
import bench_small  # noqa: E402
import bench_threads  # noqa: E402
import bench_training  # noqa: E402
from bench_training import build_trainer, ebmkit_iteration, floor_iteration  # noqa: E402
from timing import interleaved, summary  # noqa: E402

from ebmkit._engine.loop import Trainer  # noqa: E402
from ebmkit._recipes.recipe import load  # noqa: E402
from ebmkit._engine.run import setup  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("sampler", "iteration", "memory", "scaling", "fast_paths", "torchebm", "augment", "compose", "threads", "small")


def machine() -> dict:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "load_average_start": os.getloadavg()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def ratios(times: dict[str, list[float]], pairs: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    out = {}
    for a, b in pairs:
        out[f"{a} / {b}"] = {"min": min(times[a]) / min(times[b]),
                             "median": statistics.median(times[a]) / statistics.median(times[b])}
    return out


def section_sampler(args) -> dict:
    ours, bare = bench_mcmc.bench_langevin(args.rounds, 10, args.device)
    times = {"ebmkit sampler": ours, "floor (inline autograd.grad)": bare}
    return {"what": "10 Langevin steps, CIFAR-10 energy (6.64 M), batch 64", "times": {k: summary(v) for k, v in times.items()},
            "ratios": ratios(times, [("ebmkit sampler", "floor (inline autograd.grad)")]), "goal": "<= 1.05"}


def section_iteration(args) -> dict:
    batch, steps = 16, 10
    plain = build_trainer(batch, steps, args.device)
    fast = build_trainer(batch, steps, args.device, ("run.channels_last=true",))
    variants: dict[str, Callable[[], None]] = {
        "ebmkit": ebmkit_iteration(plain),
        "ebmkit channels-last": ebmkit_iteration(fast),
        "floor": floor_iteration(plain),
    }
    pairs = [("ebmkit", "floor"), ("ebmkit channels-last", "floor")]
    if args.reference:
        from bench_reference import reference_iteration

        variants["reference code"] = reference_iteration(Path(args.reference), batch, steps, args.device)
        pairs += [("reference code", "floor"), ("ebmkit", "reference code"), ("ebmkit channels-last", "reference code")]
    times = interleaved(variants, args.rounds, args.device)
    return {
        "what": f"one improved-CD iteration, CIFAR-10 recipe, batch {batch}, {steps} Langevin steps, buffer full",
        "times": {k: summary(v) for k, v in times.items()}, "ratios": ratios(times, pairs),
        "breakdown_s": bench_training.breakdown(plain),
        "floor_breakdown_s": floor_phases(plain),
        "goal": "ebmkit <= 0.92 x reference code",
    }


def floor_phases(trainer: Trainer) -> dict[str, float]:
    phases: dict[str, float] = {}
    floor_iteration(trainer, phases)()
    return phases


def section_memory(args) -> dict:
    out = {}
    for losses in ("improved", "plain"):
        out[losses] = bench_training.peak_memory(16, 10, args.device.type, losses)
    out["ratio"] = {"peak": out["improved"]["peak_mb"] / out["plain"]["peak_mb"],
                    "iteration": out["improved"]["iteration_mb"] / out["plain"]["iteration_mb"]}
    out["what"] = ("peak memory of an improved-CD iteration against plain CD (cd + energy_l2), CIFAR-10 energy, "
                   "batch 16, 10 steps; 'peak' counts everything allocated (weights, EMA, Adam, buffer), "
                   "'iteration' only what the iteration adds")
    out["goal"] = "peak <= 1.3 x plain CD"
    return out


def section_scaling(args) -> dict:
    rounds = max(2, args.rounds // 2)
    rows = []
    for batch, steps in ((8, 10), (16, 10), (32, 10), (16, 5), (16, 20)):
        trainer = build_trainer(batch, steps, args.device)
        times = interleaved({"ebmkit": ebmkit_iteration(trainer), "floor": floor_iteration(trainer)}, rounds, args.device)
        rows.append({"batch": batch, "steps": steps, "ebmkit": summary(times["ebmkit"]), "floor": summary(times["floor"]),
                     "ratio_min": min(times["ebmkit"]) / min(times["floor"])})
    return {"what": "one improved-CD iteration (CIFAR-10 recipe) by batch and Langevin steps", "rows": rows}


def section_fast_paths(args) -> dict:
    """Training iterations per second (CIFAR-10 recipe) and Langevin steps per second (CelebA-HQ
    128 energy), eager and with each fast path."""
    cuda = args.device.type == "cuda"
    batch, celeba_batch = (128, 128) if cuda else (16, 4)
    paths = {"eager": (), "channels-last": ("run.channels_last=true",)}
    if cuda:
        paths.update({"bf16 autocast": ("run.autocast='bf16'",), "cuda graphs": ("run.cuda_graphs=true",)})
    if cuda or args.compile:
        paths["torch.compile"] = ("run.compile=true",)
    iteration = interleaved({name: ebmkit_iteration(build_trainer(batch, 10, args.device, extra))
                             for name, extra in paths.items()}, args.rounds, args.device)
    from copy import deepcopy as copy_module

    from ebmkit._engine.speed import channels_last_if, fast_energy
    from ebmkit.plugins.improved_cd.resnet import ResNetEnergy128
    from ebmkit.plugins.mcmc.chain import Chain, Scheduled
    import ebmkit

    torch.manual_seed(0)
    energy = ResNetEnergy128(data_shape=(3, 128, 128)).to(args.device)
    x0 = torch.rand(celeba_batch, 3, 128, 128, device=args.device)
    langevin = ebmkit.registries().get("transitions", "langevin").build({"step_size": 100.0, "noise_std": 0.001, "clamp": (0.0, 1.0)})
    chain = Chain(steps=5, transitions=[Scheduled(langevin, 1)])
    samplers: dict[str, Callable[[], None]] = {}
    for name, extra in paths.items():
        settings = load(ROOT / "recipes/quickstart.toml", list(extra)).run
        copy = copy_module(energy)  # each path its own weights: channels-last converts them in place
        model, _ = fast_energy(copy, settings, args.device)
        start = channels_last_if(x0, settings.channels_last)
        samplers[name] = (lambda m=model, s=start: chain.sample(m, s))
    sampling = interleaved(samplers, max(2, args.rounds // 2), args.device)
    return {
        "what": f"iterations/s: CIFAR-10 recipe at batch {batch}, 10 steps; Langevin steps/s: CelebA-HQ 128 energy "
                f"(resnet_ebm_128 width 128) at batch {celeba_batch}, 5 steps",
        "iterations_per_s": {k: 1 / summary(v)["min_s"] for k, v in iteration.items()},
        "iteration_times": {k: summary(v) for k, v in iteration.items()},
        "langevin_steps_per_s": {k: 5 / summary(v)["min_s"] for k, v in sampling.items()},
        "sampling_times": {k: summary(v) for k, v in sampling.items()},
    }


def section_torchebm(args) -> dict:
    if not args.torchebm_path:
        return {"skipped": "no --torchebm-path"}
    os.environ["TORCHEBM_PATH"] = args.torchebm_path
    import bench_torchebm
    from ebmkit.plugins.improved_cd.resnet import ResNetEnergy

    torch.manual_seed(0)
    big = ResNetEnergy(data_shape=(3, 32, 32)).to(args.device)
    tiny = bench_torchebm.MLPEnergy().to(args.device)
    return {
        "cifar10 energy, batch 32, 10 steps": bench_torchebm.torchebm_vs_ebmkit(
            big, torch.rand(32, 3, 32, 32, device=args.device), 10, 100.0, 0.001, args.rounds, clamp=(0.0, 1.0)),
        "tiny MLP (2-64-64-1), batch 256, 100 steps": bench_torchebm.torchebm_vs_ebmkit(
            tiny, torch.randn(256, 2, device=args.device), 100, 0.01, 0.02 ** 0.5, args.rounds * 4),
    }


def section_augment(args) -> dict:
    batched, per_image = bench_mcmc.bench_augment(args.rounds * 4, args.device)
    times = {"ebmkit augment (batched)": batched, "torchvision image by image": per_image}
    return {"what": "CIFAR-10 augmentation preset on 128x3x32x32", "times": {k: summary(v) for k, v in times.items()},
            "ratios": ratios(times, [("torchvision image by image", "ebmkit augment (batched)")]),
            "images_per_s": 128 / min(batched)}


def section_compose(args) -> dict:
    import ebmkit
    from ebmkit.plugins.improved_cd.resnet import ResNetEnergy
    from ebmkit.plugins.mcmc.chain import Chain, Scheduled

    torch.manual_seed(0)
    a, b = (ResNetEnergy(width=16, data_shape=(3, 32, 32)).to(args.device) for _ in range(2))
    x0 = torch.rand(32, 3, 32, 32, device=args.device)
    langevin = ebmkit.registries().get("transitions", "langevin").build({"step_size": 50.0, "noise_std": 0.005})
    chain = Chain(steps=20, transitions=[Scheduled(langevin, 1)])
    composed = a + b
    times = interleaved({"a + b": lambda: chain.sample(composed, x0), "a alone": lambda: chain.sample(a, x0),
                         "b alone": lambda: chain.sample(b, x0)}, args.rounds, args.device)
    separate = [x + y for x, y in zip(times["a alone"], times["b alone"], strict=True)]
    return {"what": "20 Langevin steps on a + b (two resnet_ebm width 16), batch 32, against a and b sampled alone",
            "times": {k: summary(v) for k, v in times.items()},
            "ratio_min": min(times["a + b"]) / min(separate),
            "samples_per_s": 32 / min(times["a + b"])}


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        busy.kill()


def section_small(args) -> dict:
    """Small models: ebmkit's update against the same arithmetic inline (benchmarks/bench_small.py), one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"rows": bench_small.rows(4 * args.rounds, 50, args.device)}  # many short rounds: per-round ratios
    finally:
        torch.set_num_threads(threads)


def section_threads(args) -> dict:
    if args.device.type != "cpu":
        return {"skipped": "CPU only"}
    cases = {name: case for name, case in bench_threads.CASES.items() if "6.6 M" not in name or args.rounds >= 5}
    out = {}
    for load_name in ("idle", "one core busy"):
        with busy_core() if load_name != "idle" else contextlib.nullcontext():
            for name, (path, overrides) in cases.items():
                updates = 30 if "quickstart" in name else 3
                rates: dict[int, list[float]] = {1: [], 2: []}
                for r in range(max(2, args.rounds // 2)):
                    for threads in ((1, 2) if r % 2 == 0 else (2, 1)):
                        rates[threads].append(bench_threads.rate(path, overrides, threads, updates))
                out[f"{name}, {load_name}"] = {"1 thread it/s": statistics.median(rates[1]),
                                               "2 threads it/s": statistics.median(rates[2]),
                                               "1 / 2 threads": statistics.median(rates[1]) / statistics.median(rates[2])}
    return out


def measured(section: dict) -> str:
    """How a section was measured, when it says (rounds, load average before and after)."""
    run = section.get("run")
    if not run:
        return ""
    note = f" ({run['note']})" if "note" in run else ""
    on = f" on {run['device']} ({run['machine']})" if "device" in run else ""
    return (f" Measured {run['date']}{on}, {run['rounds']} rounds, load average {run['load_average'][0]:.2f} → "
            f"{run['load_average'][1]:.2f}{note}.")


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Performance", "",
        "Generated by `python benchmarks/run_all.py` (edit that file, not this one). Every ratio compares",
        "variants timed side by side in one run, interleaved over rounds; min is the least disturbed",
        "round, median the typical one. Absolute times depend on the machine and its load; the ratios",
        "are what to compare.", "",
        "## What keeps the loop at its floor", "",
        "- The sampler's last step, which improved CD's KL term differentiates through, is computed once with its",
        "  graph; the reference code runs it without the graph and then again with it.",
        "- The terms that differentiate through the sampler (KL, entropy) are backpropagated first, which frees",
        "  the sampler's graph before the positive and negative forwards are built: peak memory is the larger",
        "  part, not the sum.",
        "- Nothing in an update waits for the device but one divergence flag: the metrics and the sampler's",
        "  traces stay tensors on the device, and a logged update reads them all in one transfer.",
        "- Augmentation runs batched on the device; the buffer stores uint8 and draws by index.", "",
        "## The fast paths", "",
        "Each is a `[run]` switch, off by default, with a test that it trains what the plain path trains",
        "(tests/test_fast_paths.py):", "",
        "- `compile = true`: `torch.compile` of the energy (its forward and, through AOTAutograd, the input-gradient",
        "  pass of every first-order sampler step). The compiler cannot differentiate its own backward again, so",
        "  the passes whose graph is differentiated twice (improved CD's KL step) and the KL term's functional",
        "  call with frozen parameters run the same module eagerly. Compiling the ResNet energies takes minutes",
        "  on a CPU.",
        "- `cuda_graphs = true`: compile mode \"reduce-overhead\", which captures the fixed-shape passes in CUDA",
        "  graphs; CUDA only (elsewhere it is reported and ignored).",
        "- `channels_last = true`: the weights and the chains in the channels-last memory format; sampler noise is",
        "  drawn in logical order, so a channels-last chain draws the numbers a contiguous one does.",
        "- `autocast = \"bf16\"`: the forward under bfloat16 autocast, the energy returned in float32 (so every",
        "  loss and the input gradient's starting sum are float32). On the CIFAR-10 energy it moves the energy by",
        "  about 2% and the input gradient by about 4%: a trade of precision for speed on GPUs with bf16 units.", "",
        f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']}, Python {m['python']}, {m['threads']} threads; "
        f"device {results['device']}{' (' + m['gpu'] + ')' if 'gpu' in m else ''}. Each section says its rounds "
        "and the machine's load average (1 minute) before and after it.", "",
    ]
    s = results["sections"]
    if "sampler" in s:
        lines += ["## Sampler against its floor", "", f"{s['sampler']['what']}. The floor is the same steps written inline "
                  "with bare `torch.autograd.grad`. Goal: ≤ 1.05." + measured(s["sampler"]), "", "| | min | median |", "|---|---|---|"]
        lines += [f"| {k} | {fmt(v['min_s'])} | {fmt(v['median_s'])} |" for k, v in s["sampler"]["times"].items()]
        lines += [f"| **{k}** | **{v['min']:.3f}** | **{v['median']:.3f}** |" for k, v in s["sampler"]["ratios"].items()] + [""]
    if "iteration" in s:
        it = s["iteration"]
        lines += ["## One improved-CD training iteration", "", f"{it['what']}. The floor is the passes no implementation can avoid, "
                  "written inline: K − 1 steps of forward and input gradient, the last with its graph, the positive and "
                  "negative forwards, the KL forward with frozen parameters, the backward. The reference code is "
                  "github.com/yilundu/improved_contrastive_divergence's own loop body and functions "
                  "(benchmarks/bench_reference.py), which run the last step twice (without and with its graph); ebmkit "
                  "runs it once." + measured(it), "", "| | min | median |", "|---|---|---|"]
        lines += [f"| {k} | {fmt(v['min_s'])} | {fmt(v['median_s'])} |" for k, v in it["times"].items()]
        lines += [f"| **{k}** | **{v['min']:.3f}** | **{v['median']:.3f}** |" for k, v in it["ratios"].items()]
        lines += ["", "Where ebmkit's iteration goes (each phase timed once, on its own), beside the floor's part of the "
                  "same work; phases with no floor counterpart are ebmkit's additions:", "",
                  "| phase | ebmkit | floor | share of ebmkit's iteration |", "|---|---|---|---|"]
        total = sum(it["breakdown_s"].values())
        floor = it.get("floor_breakdown_s", {})
        lines += [f"| {k} | {fmt(v)} | {fmt(floor[k]) if k in floor else '—'} | {100 * v / total:.1f}% |"
                  for k, v in it["breakdown_s"].items()] + [""]
    if "memory" in s:
        mem = s["memory"]
        lines += ["## Peak memory: improved CD against plain CD", "", mem["what"] + ". On the CPU, from the profiler's "
                  "memory timeline of the third iteration (tensor allocations); on CUDA, `torch.cuda.max_memory_allocated`. "
                  "The terms that differentiate through the sampler are backpropagated first, which frees the sampler's "
                  "graph before the other terms build theirs. Goal: peak ≤ 1.3." + measured(mem), "",
                  "| | peak MB | before the iteration MB | the iteration adds MB |", "|---|---|---|---|"]
        for k in ("improved", "plain"):
            lines.append(f"| {k} CD | {mem[k]['peak_mb']:.0f} | {mem[k]['base_mb']:.0f} | {mem[k]['iteration_mb']:.0f} |")
        lines += [f"| **improved / plain** | **{mem['ratio']['peak']:.2f}** | | **{mem['ratio']['iteration']:.2f}** |", ""]
    if "scaling" in s:
        lines += ["## How an iteration's cost grows", "", s["scaling"]["what"] + "." + measured(s["scaling"]), "",
                  "| batch | steps | ebmkit min | floor min | ebmkit / floor |", "|---|---|---|---|---|"]
        lines += [f"| {r['batch']} | {r['steps']} | {fmt(r['ebmkit']['min_s'])} | {fmt(r['floor']['min_s'])} | {r['ratio_min']:.3f} |"
                  for r in s["scaling"]["rows"]] + [""]
    if "fast_paths" in s:
        fp = s["fast_paths"]
        lines += ["## Fast paths", "", fp["what"] + ". `[run]` switches: docs/recipes.md." + measured(fp), "",
                  "| path | iterations/s | Langevin steps/s |", "|---|---|---|"]
        lines += [f"| {k} | {fp['iterations_per_s'][k]:.3f} | {fp['langevin_steps_per_s'].get(k, float('nan')):.2f} |"
                  for k in fp["iterations_per_s"]] + [""]
    if "torchebm" in s:
        lines += ["## Sampling against torchebm", ""]
        if "skipped" in s["torchebm"]:
            lines += [f"Not measured in this run ({s['torchebm']['skipped']}).", ""]
        else:
            lines += ["torchebm's `LangevinDynamics` (installed beside, never a dependency) and ebmkit's chain, the same energy, "
                      "start and noise (checked equal before timing). Ratio > 1: torchebm is slower." + measured(s["torchebm"]), "",
                      "| case | ebmkit steps/s | torchebm steps/s | torchebm / ebmkit time (min, median) |", "|---|---|---|---|"]
            for k, v in s["torchebm"].items():
                if k == "run":
                    continue
                lines.append(f"| {k} | {v['ebmkit']['steps_per_s_min']:.1f} | {v['torchebm']['steps_per_s_min']:.1f} | "
                             f"{v['ratio_min']:.2f}, {v['ratio_median']:.2f} |")
            lines.append("")
    if "augment" in s:
        a = s["augment"]
        lines += ["## Augmentation", "", a["what"] + "." + measured(a), "", "| | min | median |", "|---|---|---|"]
        lines += [f"| {k} | {fmt(v['min_s'])} | {fmt(v['median_s'])} |" for k, v in a["times"].items()]
        lines += [f"| **{k}** | **{v['min']:.1f}×** | **{v['median']:.1f}×** |" for k, v in a["ratios"].items()]
        lines += ["", f"{a['images_per_s']:.0f} images/s batched.", ""]
    if "compose" in s:
        c = s["compose"]
        lines += ["## Composition sampling", "", c["what"] + "." + measured(c), "", "| | min | median |", "|---|---|---|"]
        lines += [f"| {k} | {fmt(v['min_s'])} | {fmt(v['median_s'])} |" for k, v in c["times"].items()]
        lines += [f"| **(a + b) / (a alone + b alone)** | **{c['ratio_min']:.3f}** | |", "",
                  f"{c['samples_per_s']:.1f} composed samples/s (20 steps each).", ""]
    if "threads" in s and "skipped" in s["threads"]:
        lines += ["## Threads", "", f"Not measured in this run ({s['threads']['skipped']}).", ""]
    elif "threads" in s:
        lines += ["## Threads", "", "Training updates per second at 1 and 2 intra-op threads (benchmarks/bench_threads.py), "
                  "on an idle machine and with one core kept busy by another process. `[run].threads` defaults to 1 below "
                  "1 M parameters and to torch's default above." + measured(s["threads"]), "", "| case | 1 thread it/s | 2 threads it/s | 1 / 2 |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {v['1 thread it/s']:.2f} | {v['2 threads it/s']:.2f} | {v['1 / 2 threads']:.2f} |"
                  for k, v in s["threads"].items() if isinstance(v, dict) and k != "run"] + [""]
    if "small" in s:
        lines += ["## Small models: the fixed cost of an update", "",
                  "ebmkit's update against the same arithmetic written inline with bare torch (benchmarks/bench_small.py: "
                  "the quickstart update, the chain sampler's Langevin steps on its MLP at batch 256, an RBM CD-1 update of "
                  "recipes/rbm_shapes_cd1.toml at batch 10 and 100), one thread, in 4 × --rounds short rounds (the quickstart: 40 × --rounds rounds of 5 updates); the ratio is the median over rounds of the two times in the same round (quartiles in brackets); scikit-learn's "
                  "BernoulliRBM (numpy, its own gradient) beside the RBM row as an outside anchor." + measured(s["small"]), "",
                  bench_small.markdown(s["small"]["rows"]), "",
                  "On this shared 2-core machine the medians of runs taken an hour apart differ by up to 0.04 (the quartiles "
                  "show the spread within a run). What remains of the fixed cost is Python between the operations: the "
                  "contract checks on what components return, the chain's step objects, the hooks and the per-update "
                  "divergence check (one stacked read of the loss, the mean energies and each parameter's gradient norm).", ""]
    if not any(section.get("run", {}).get("device", "cpu").startswith("cuda") for section in s.values()):
        lines += ["## GPU", "", "No GPU in this run. `python benchmarks/run_all.py --device cuda` on a CUDA machine fills the "
                  "fast-path table with bf16 autocast, CUDA graphs and torch.compile at batch 128.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference", help="a checkout of the reference code (see benchmarks/bench_reference.py)")
    parser.add_argument("--torchebm-path", default=os.environ.get("TORCHEBM_PATH"))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the CPU (minutes to compile)")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--out-json", default=str(ROOT / "benchmarks/results/performance.json"))
    parser.add_argument("--out-md", default=str(ROOT / "docs/performance.md"))
    parser.add_argument("--from-json", help="only write the markdown, from the results of an earlier run")
    args = parser.parse_args()
    if args.from_json:
        Path(args.out_md).write_text(markdown(json.loads(Path(args.from_json).read_text())))
        return
    args.device = torch.device(args.device)
    results = {"machine": machine(), "device": str(args.device), "rounds": args.rounds,
               "date": time.strftime("%Y-%m-%d"), "sections": {}}
    functions = {name: globals()[f"section_{name}"] for name in SECTIONS}
    out_json = Path(args.out_json)
    if set(args.only) != set(SECTIONS) and out_json.exists():  # a partial run updates its sections only
        earlier = json.loads(out_json.read_text())
        results["sections"] = earlier["sections"]
    for name in args.only:
        started, load_before = time.perf_counter(), os.getloadavg()[0]
        print(f"== {name}", flush=True)
        results["sections"][name] = functions[name](args)
        results["sections"][name]["run"] = {"rounds": args.rounds, "date": results["date"], "device": str(args.device),
                                            "machine": results["machine"].get("gpu", results["machine"]["cpu"]),
                                            "load_average": [load_before, os.getloadavg()[0]]}
        print(json.dumps(results["sections"][name], indent=1, default=str)[:3000], f"\n({time.perf_counter() - started:.0f} s)", flush=True)
    results["machine"]["load_average_end"] = os.getloadavg()
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1, default=str))
    Path(args.out_md).write_text(markdown(results))
    print(f"wrote {args.out_json} and {args.out_md}")


if __name__ == "__main__":
    main()
