"""A run's life before the loop: opening a new run (setup: build, threads, folder, state) or
resuming one (the recipe a resume may change, the latest checkpoint restored), and the Run
every lifecycle hook receives.

A run folder holds ``recipe.toml`` (the recipe with every parameter written out, defaults
included), ``run.json`` (each component's full record: name, parameters, plugin,
distribution and version; the threads chosen), ``metrics.jsonl`` (one JSON object per
line), ``checkpoints/`` (safetensors) and whatever the evaluators write.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import tomli_w
import torch
from rich.console import Console

from ebmkit._engine.atomic import write_text
from ebmkit._engine.checkpoint import list_checkpoints, prune_checkpoints, restore_checkpoint
from ebmkit._recipes.build import Components, build
from ebmkit._host.console import console as default_console
from ebmkit._host.console import escape
from ebmkit._host.data import DataStream
from ebmkit._engine.distributed import MainRankHooks, World, barrier, from_main, join, world_from_env
from ebmkit._host.errors import EbmkitError
from ebmkit._host.protocols import EvalContext
from ebmkit._recipes.recipe import Recipe, RunSettings
from ebmkit._host.registry import Registries
from ebmkit._host.installed import default_registries
from ebmkit._engine.speed import fast_energy
from ebmkit._engine.state import EMA, RunState

#: Below this many parameters an energy trains on one CPU thread by default: its ops are so
#: small that torch's thread barrier costs more than a second thread gains, and on a busy
#: machine many times more (benchmarks/bench_threads.py measures it).
SMALL_ENERGY_PARAMETERS = 1_000_000
#: Rank r of a data-parallel run samples with seed + r * stride after the shared initialisation.
RANK_SEED_STRIDE = 1_000_003
#: The k-th divergence rollback reseeds rank r with seed + r * RANK_SEED_STRIDE + k * this: larger
#: than every rank's offset (up to 2**20 ranks), so no rank's seed after a rollback is another's.
ROLLBACK_SEED_STRIDE = 2**40


def rank_seed(seed: int, rank: int, rollbacks: int = 0) -> int:
    """The seed of a rank's random streams: distinct for every rank and every rollback."""
    return seed + RANK_SEED_STRIDE * rank + ROLLBACK_SEED_STRIDE * rollbacks


@attrs.define
class Run:
    """A run in progress: what every lifecycle hook receives.

    :ivar model: what the loop trains through: the energy, or the module a device strategy
        wrapped it in (``ebmkit_wrap_energy``). ``state.energy`` is always the plain energy.
    :ivar latest: the latest value of every metric logged so far.
    :ivar live: show a live progress bar (a terminal), rather than plain lines.
    :ivar resumed: the state was restored from a checkpoint of this folder.
    :ivar lock: the open lock file that keeps other processes out of the run folder.
    """

    recipe: Recipe
    out_dir: Path
    components: Components
    state: RunState
    device: torch.device
    model: torch.nn.Module
    hook: Any
    console: Console
    live: bool
    threads: int
    latest: dict[str, float] = attrs.field(factory=dict)
    resumed: bool = False
    lock: Any = None
    #: this process's place in a data-parallel run (rank 0 of 1 when not distributed)
    world: World = attrs.field(factory=World)
    #: the plugin manager whose hooks the run calls (``hook``); None for a run built by hand
    plugin_manager: Any = None
    #: the runs this one's weights came through before it (``[train].init_from``), earliest first
    history: list[dict[str, Any]] = attrs.field(factory=list)
    _plugins: dict[str, object] = attrs.field(factory=dict, repr=False, init=False)

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object for the rest of this run: its lifecycle hooks are called
        like any plugin's until the run ends, when it is unregistered. This is where a plugin
        keeps what it holds for one run (a progress bar, a writer), as a pytest plugin
        registers an object for its session. ``name`` finds it again (:meth:`plugin`)."""
        if self.plugin_manager is None:
            raise EbmkitError("this run has no plugin manager to register a plugin with")
        self.plugin_manager.register(plugin, name=f"{name}@run{id(self):x}")
        self._plugins[name] = plugin

    def plugin(self, name: str) -> object | None:
        """The plugin object registered for this run under ``name``, or None."""
        return self._plugins.get(name)

    def unregister_plugins(self) -> None:
        """Unregister every plugin object registered for this run (the loop does, when it ends)."""
        for plugin in self._plugins.values():
            self.plugin_manager.unregister(plugin)
        self._plugins.clear()

    def event(self, step: int, event: dict[str, Any]) -> None:
        """Record an event (``{"event": name, "message": text, ...}``): every ``ebmkit_event`` gets it."""
        self.hook.ebmkit_event(run=self, step=step, event=event)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Log metrics (floats, 0-d tensors, or text such as a protocol line): every logger
        (``ebmkit_log_metrics``) gets them as floats and text."""
        metrics = read_metrics(metrics)
        self.latest.update(metrics)
        self.hook.ebmkit_log_metrics(run=self, step=step, metrics=metrics)

    def eval_context(self, step: int) -> EvalContext:
        """What an evaluator gets: the EMA weights when the recipe keeps an EMA."""
        energy = self.state.ema.module if self.state.ema is not None else self.state.energy
        c = self.components
        return EvalContext(energy, c.dataset, c.sampler, c.noise, self.out_dir, step, self.device, c.buffer,
                           ema=self.state.ema is not None)

    def record(self) -> dict[str, Any]:
        """What ``run.json`` holds: where the recipe came from, and every component's record."""
        components = {spec.where: spec.record() for specs in self.recipe.components.values() for spec in specs}
        return {"source": self.recipe.source, "threads": self.threads, "device": str(self.device), "components": components}


def read_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as Python floats (text stays text), reading every tensor in one transfer per device."""
    out: dict[str, Any] = dict(metrics)
    by_device: dict[torch.device, list[str]] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            by_device.setdefault(value.device, []).append(key)
        elif not isinstance(value, str):
            out[key] = float(value)
    for keys in by_device.values():
        values = torch.stack([metrics[k].detach().reshape(()).to(torch.float64) for k in keys]).tolist()
        out.update(zip(keys, values, strict=True))
    return out


def default_out_dir(recipe: Recipe, root: Path = Path("runs")) -> Path:
    stem = recipe.run.name or Path(recipe.source).stem
    return root / f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"


def usable_device(settings: RunSettings) -> torch.device:
    try:
        device = torch.device(settings.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise EbmkitError(f"[run].device = {settings.device!r} is not usable here: {exc}") from None
    return device


def choose_threads(settings: RunSettings, energy: torch.nn.Module) -> tuple[int, str]:
    """The intra-op thread count for this run, and why."""
    if settings.threads is not None:
        return settings.threads, "\\[run].threads"
    count = sum(p.numel() for p in energy.parameters())
    if count < SMALL_ENERGY_PARAMETERS:
        return 1, f"the energy has {count:,} parameters (< {SMALL_ENERGY_PARAMETERS:,}); set \\[run].threads to change"
    return torch.get_num_threads(), f"torch's default for an energy of {count:,} parameters; set \\[run].threads to change"


#: What marks a folder as holding a run.
RUN_FILES = ("recipe.toml", "run.json", "metrics.jsonl", "checkpoints")


def holds_run(folder: Path) -> bool:
    return any((Path(folder) / name).exists() for name in RUN_FILES)


def resume_run(run: Run) -> bool:
    """Restore the latest complete checkpoint of the run folder (none: start again from step 0).

    :return: True when the run is already complete: nothing is left to do.
    """
    if run.world.is_main:
        prune_checkpoints(run.out_dir, None)  # temporary folders a kill left behind
    barrier(run.world)
    found = list_checkpoints(run.out_dir)
    latest = found[-1] if found else None
    if latest is not None:
        restore_checkpoint(run, latest)
        run.resumed = True
        run.console.print(f"resuming from step {run.state.step} ({latest})", soft_wrap=True)
    else:
        run.console.print(f"{run.out_dir} has no checkpoint yet: starting from step 0", soft_wrap=True)
    settings, state = run.recipe.train, run.state
    if state.step > settings.steps:
        raise EbmkitError(f"{run.out_dir} is at step {state.step}, past [train].steps = {settings.steps}; give --set train.steps= a larger value")
    if run.world.is_main:
        write_run_files(run)
    run.hook.ebmkit_checkpoint_load(run=run, folder=latest)
    out_of_time = settings.time_limit_s is not None and state.train_seconds >= settings.time_limit_s
    if latest is not None and (state.step == settings.steps or out_of_time):
        limit = "--set train.steps=N" if not out_of_time else "a larger --set train.time_limit_s=SECONDS"
        run.console.print(f"{run.out_dir} is complete ({state.step} updates); extend it with {limit}", soft_wrap=True)
        return True
    return False


def console_for(world: World, console: Console | None = None) -> Console:
    """The console this process speaks to: ``console`` (or ebmkit's) on rank 0, which speaks
    for the run, and a silent one on the other ranks."""
    return (console or default_console) if world.is_main else Console(quiet=True)


def setup(
    recipe: Recipe, out_dir: Path, *, console: Console | None = None, live: bool | None = None,
    registries: Registries | None = None, resume: bool = False, world: World | None = None,
) -> Run:
    """Build every component, then create the run folder: a recipe that fails to build leaves no folder.

    :param resume: ``out_dir`` holds the run being resumed (its state is restored by the
        caller); without it, a folder that already holds a run is refused.
    :param world: this process's place in a data-parallel run, when the caller already read it
        (``ebmkit run`` does); otherwise read from torchrun's environment here.

    The caller restores the thread count (``torch.set_num_threads``) when the run ends.
    """
    world = world or world_from_env()
    device = _joined_device(recipe.run, world)
    out_dir = _free_folder(out_dir, world, resume)
    console = console_for(world, console)
    registries = registries_of(recipe, registries)
    components, threads = _build_components(recipe, device, world, console)

    lock = None
    if world.is_main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EbmkitError(f"cannot create the run folder {out_dir}: {exc.strerror or exc}") from None
        lock = lock_run_folder(out_dir)
    energy = components.energy
    model, notes = fast_energy(energy, recipe.run, device)  # before the EMA copies the weights' memory format
    for note in notes:
        console.print(escape(note))
    state = _initial_state(recipe, components, world)
    hook = MainRankHooks(registries.pm.hook, world) if world.distributed else registries.pm.hook
    run = Run(recipe, out_dir, components, state, device, energy, hook, console,
              console.is_terminal if live is None else live, threads, lock=lock, world=world,
              plugin_manager=registries.pm)
    run.model = run.hook.ebmkit_wrap_energy(run=run, energy=model) or model
    if not resume and world.is_main:  # a resumed run rewrites them once its checkpoint is restored
        write_run_files(run)
    barrier(world)
    return run


def _joined_device(settings: RunSettings, world: World) -> torch.device:
    """The run's device (a data-parallel rank's own GPU), once this process has joined the world."""
    device = usable_device(settings)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    join(world, device, settings.collective_timeout_s)
    return device


def _free_folder(out_dir: Path, world: World, resume: bool) -> Path:
    """Rank 0's run folder; refused when it already holds a run that is not being resumed."""
    out_dir = Path(from_main(str(out_dir), world))  # a default folder names rank 0's time
    _refuse_an_impossible_folder(out_dir)
    refused = not resume and holds_run(out_dir)
    barrier(world)  # every rank has looked before rank 0 creates the folder
    if refused:
        raise EbmkitError(
            f"{out_dir} already holds a run; continue it with 'ebmkit run --resume {out_dir}', "
            "or choose another --out folder"
        )
    return out_dir


def _refuse_an_impossible_folder(out_dir: Path) -> None:
    """A run folder that cannot be created (under a file, or a file itself) is refused before anything is built."""
    for place in (out_dir, *out_dir.parents):
        if place.exists():
            if not place.is_dir():
                what = "is a file" if place == out_dir else f"is under {place}, which is a file"
                raise EbmkitError(f"--out {out_dir} {what}: a run folder must be a folder; choose another --out")
            return


def _build_components(recipe: Recipe, device: torch.device, world: World, console: Console) -> tuple[Components, int]:
    """The components, with the same initial weights on every rank, and the thread count, now set."""
    torch.manual_seed(recipe.run.seed)  # every rank builds the same initial weights
    components = build(recipe, device)
    if world.distributed:  # then each rank samples its own chains
        torch.manual_seed(rank_seed(recipe.run.seed, world.rank))
    threads, why = choose_threads(recipe.run, components.energy)
    torch.set_num_threads(threads)
    console.print(f"threads: {threads} ({why})")
    _report_ranks(recipe, world, device, console)
    for warning in components.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    return components, threads


def _report_ranks(recipe: Recipe, world: World, device: torch.device, console: Console) -> None:
    """Say how the batch is split over data-parallel ranks, and warn when the recipe was written for another number."""
    if world.distributed:
        console.print(f"data-parallel: {world.size} ranks ({'NCCL' if device.type == 'cuda' else 'gloo'}), "
                      f"batch {recipe.train.batch_size} per rank, {recipe.train.batch_size * world.size} in all")
    written_for = recipe.run.world_size
    if written_for is not None and written_for != world.size:
        console.print(
            f"[yellow]warning:[/] this recipe is written for {written_for} data-parallel ranks "
            f"(ebmkit run --nproc {written_for}); with {world.size}, the effective batch is "
            f"{recipe.train.batch_size * world.size} instead of {recipe.train.batch_size * written_for}, "
            f"with {world.size} replay buffer(s) instead of {written_for}"
        )


def _initial_state(recipe: Recipe, components: Components, world: World) -> RunState:
    """The run state at step 0: the EMA copy (if any), this rank's data stream and the stateful components."""
    energy, optimizer = components.energy, components.optimizer
    ema = EMA(energy, recipe.train.ema) if recipe.train.ema is not None else None
    data = DataStream(components.dataset, recipe.train.batch_size, recipe.run.seed, world.rank, world.size)
    stateful = RunState.stateful_components(components.built, energy, optimizer)
    return RunState(energy, optimizer, data, ema, stateful)


def write_run_files(run: Run) -> None:
    """``recipe.toml`` (every parameter written out) and ``run.json`` (every component's record)."""
    source = _first_source(run.recipe, run.out_dir)
    write_text(run.out_dir / "recipe.toml", f"# resolved from {source}\n" + tomli_w.dumps(run.recipe.resolved()))
    write_text(run.out_dir / "run.json", json.dumps({**run.record(), "source": source}, indent=1))


def lock_run_folder(folder: Path) -> Any:
    """Keep other processes out of a run folder while this one trains in it (released when the
    returned file is closed, or the process ends). Where ``fcntl`` is missing, there is no lock."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = (folder / ".lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise EbmkitError(f"{folder} is in use by another ebmkit process; let it finish (or stop it) first") from None
    return handle


def _first_source(recipe: Recipe, out_dir: Path) -> str:
    """Where the recipe first came from: a resumed run reads its own recipe.toml, which says."""
    if Path(recipe.source).resolve() == (out_dir / "recipe.toml").resolve():
        first = Path(recipe.source).read_text(encoding="utf-8").partition("\n")[0]
        if first.startswith("# resolved from "):
            return first.removeprefix("# resolved from ")
    return recipe.source


#: What ``--set`` may change when a run resumes: how long it trains, how often it logs, saves
#: and evaluates, and where; and the ``[run]`` settings plugins declare (``ebmkit_run_settings``).
#: Anything else would change the model, the data or the updates.
RESUMABLE = (
    "train.steps", "train.log_every", "train.checkpoint_every", "train.checkpoint_every_minutes", "train.keep_checkpoints",
    "train.time_limit_s", "train.eval_at_start", "train.on_divergence", "run.threads", "run.device", "run.name",
    "run.collective_timeout_s", "evaluators",
)


def registries_of(recipe: Recipe, given: Registries | None = None) -> Registries:
    """The registries a run of ``recipe`` uses: those it was checked against. Others given
    too are refused, since the recipe's components were checked against the first."""
    if recipe.registries is not None and given is not None and given is not recipe.registries:
        raise EbmkitError(
            "this recipe was checked against other plugins than the registries given to run it; load it again "
            "with those registries (ebmkit.load_recipe(path, overrides, registries))"
        )
    return recipe.registries or given or default_registries()


def resume_recipe(run_dir: str | Path, overrides: Sequence[str] = (), registries: Registries | None = None) -> Recipe:
    """The recipe a run folder ran (its ``recipe.toml``), with the overrides a resume allows.

    :raises EbmkitError: the folder holds no run, or an override would change the model or the data.
    """
    from ebmkit._recipes import recipe as recipe_

    folder = Path(run_dir)
    if not folder.is_dir():
        raise EbmkitError(f"--resume {run_dir}: no such run folder")
    if not (folder / "recipe.toml").is_file():
        raise EbmkitError(f"--resume {run_dir}: not a run folder (it has no recipe.toml)")
    saved = recipe_.load(folder / "recipe.toml", (), registries)
    if not overrides:
        return saved
    changed = recipe_.load(folder / "recipe.toml", overrides, registries)
    refused, resumable = _changes_refused(saved, changed)
    if refused:
        raise EbmkitError(
            f"--set cannot change {', '.join(refused)} when resuming {run_dir}: the run would not continue as it "
            f"was trained. A resumed run may change only {', '.join(resumable)}; start a new run (ebmkit run "
            "RECIPE --out NEW_FOLDER) to train with other settings"
        )
    return changed


def continues(recipe: Recipe, out_dir: str | Path) -> bool:
    """``--resume auto``: whether ``recipe`` continues the run in ``out_dir`` (True) or starts one
    there (False: the folder holds no run). A re-launched job (a requeue, torchrun's restart)
    runs the same command again and goes on where the last one stopped.

    :raises EbmkitError: the folder holds a run that ``recipe`` does not continue: it differs
        in more than a resume may change (the same check as ``--resume RUN_DIR --set ...``).
    """
    folder = Path(out_dir)
    if not holds_run(folder):
        return False
    saved = resume_recipe(folder, (), recipe.registries)
    refused, resumable = _changes_refused(saved, recipe)
    if refused:
        raise EbmkitError(
            f"--resume auto: {folder} holds a run of another recipe ({', '.join(refused)} differ); it would not continue "
            f"as it was trained. A resumed run may change only {', '.join(resumable)}; choose another --out folder"
        )
    return True


def _changes_refused(saved: Recipe, changed: Recipe) -> tuple[list[str], tuple[str, ...]]:
    """The dotted paths at which ``changed`` differs from ``saved`` beyond what a resume may
    change, and what a resume may change (RESUMABLE and the plugins' ``[run]`` settings)."""
    plugins = tuple(f"run.{name}" for name in changed.plugin_settings)
    refused = [path for path in _differences(saved.resolved(), changed.resolved()) if not _resumable(path, plugins)]
    return refused, RESUMABLE + plugins


def _resumable(path: str, plugin_settings: tuple[str, ...] = ()) -> bool:
    return any(path == key or path.startswith((f"{key}.", f"{key}[")) for key in RESUMABLE + plugin_settings)


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """The dotted paths at which two resolved recipes differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(a) + [k for k in b if k not in a]
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]
