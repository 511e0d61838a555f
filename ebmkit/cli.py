"""The ``ebmkit`` command line.

A user error (an :class:`~ebmkit.EbmkitError`) prints a clear message and exits
with code 2, without a traceback; any other exception is an internal error and keeps its
traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from ebmkit._host.console import console, escape, out
from ebmkit._host.errors import EbmkitError


class UserError(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:  # noqa: ARG002 - click's signature
        console.print(f"[bold red]error:[/] {self.message}", markup=True, highlight=False, soft_wrap=True)


class EbmkitGroup(click.Group):
    """Turns ebmkit errors into clean messages, and lets plugins add commands."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EbmkitError as exc:
            raise UserError(escape(str(exc))) from None

    def _with_plugins(self, ctx: click.Context) -> None:
        if getattr(self, "_plugins_added", False):
            return
        self._plugins_added = True
        from ebmkit._host.installed import default_plugin_manager

        try:  # the plugins' modules only: listing commands builds no registry (and imports no torch)
            pm = default_plugin_manager()
            _warn_failed({info.name: info.error or "" for info in pm.failures})
            pm.hook.ebmkit_register_commands(cli=self)
        except EbmkitError as exc:
            raise UserError(escape(str(exc))) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._with_plugins(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str):
        command = super().get_command(ctx, name)
        if command is None:
            self._with_plugins(ctx)
            command = super().get_command(ctx, name)
        return command


_warned = False


def _registries():
    """The loaded registries; warns once about plugins that failed to load."""
    from ebmkit._host.installed import default_registries

    registries = default_registries()
    _warn_failed(registries.failures)
    return registries


def _warn_failed(failures: dict[str, str]) -> None:
    """Warn once a process about the plugins that failed to load (or to register)."""
    global _warned
    if _warned or not failures:
        return
    _warned = True
    for name, error in sorted(failures.items()):
        console.print(f"[yellow]warning:[/] plugin {name!r} failed to load: {escape(error)} (see 'ebmkit plugins')", soft_wrap=True)


@click.group(cls=EbmkitGroup)
@click.version_option(package_name="ebmkit")
def cli() -> None:
    """Train, sample and compose energy-based models."""


def _load(recipe: str, overrides: tuple[str, ...]):
    """The recipe at the path ``recipe``, or the shipped recipe of that name."""
    from ebmkit._recipes import recipe as recipe_
    from ebmkit._recipes.shipped import resolve

    return recipe_.load(resolve(recipe), overrides, _registries())


@cli.command()
@click.argument("recipe", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe value (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder (default: a new folder under runs/).")
@click.option("--resume", "resume_dir", metavar="RUN_DIR|auto",
              help="Continue the run in RUN_DIR from its latest checkpoint, with its own recipe; or 'auto' (with RECIPE "
                   "and --out): continue --out's run when it has one, else start it, so that a re-launched job goes on.")
@click.option("--nproc", type=click.IntRange(min=1), help="Train data-parallel in N processes on this machine (launches torchrun).")
def run(recipe: str | None, overrides: tuple[str, ...], out_dir: str | None, resume_dir: str | None, nproc: int | None) -> None:
    """Train from a TOML recipe (a path, or the name of a shipped one: ebmkit recipes) and write
    a run folder; or continue one (--resume RUN_DIR).

    Ctrl-C (or SIGTERM) writes a checkpoint, prints the command that resumes, and exits 130.
    Data-parallel: --nproc N here, or torchrun --nproc_per_node=N [--nnodes ...] -m ebmkit run ...;
    a rank that dies or raises stops the others, which exit 1 naming it.
    """
    from ebmkit._engine.distributed import world_from_env
    from ebmkit._host.errors import RankLost, RunInterrupted
    from ebmkit._engine.loop import train
    from ebmkit._engine.run import console_for, default_out_dir, resume_recipe

    world = world_from_env()  # the one place a run from the command line reads it
    if nproc is not None and nproc > 1 and not world.distributed:
        sys.exit(_torchrun(nproc, recipe, overrides, out_dir, resume_dir))
    shown_console = console_for(world, console)

    resume: bool | str = resume_dir is not None
    if resume_dir == "auto":
        if recipe is None or out_dir is None:
            raise EbmkitError("--resume auto needs RECIPE and --out RUN_DIR: it continues the run in RUN_DIR when there "
                              "is one, and starts it there when there is none")
        loaded, folder, resume = _load(recipe, overrides), Path(out_dir), "auto"
        shown_console.print(f"[bold]ebmkit run[/] {recipe} -> {folder} (--resume auto)")
    elif resume_dir is not None:
        if recipe is not None or out_dir is not None:
            raise EbmkitError("--resume continues a run with its own recipe.toml, in its own folder: give no RECIPE and no --out")
        loaded, folder = resume_recipe(resume_dir, overrides, _registries()), Path(resume_dir)
        shown_console.print(f"[bold]ebmkit run --resume[/] {folder}")
    elif recipe is None:
        raise EbmkitError("missing RECIPE: ebmkit run RECIPE.toml (or ebmkit run --resume RUN_DIR)")
    else:
        loaded = _load(recipe, overrides)
        folder = Path(out_dir) if out_dir else default_out_dir(loaded)
        shown_console.print(f"[bold]ebmkit run[/] {recipe} -> {folder}")
    try:
        result = train(loaded, folder, console=shown_console, resume=resume, world=world)
    except RunInterrupted as exc:
        shown_console.print(f"resume with: [bold]{escape(exc.resume_command)}[/]", soft_wrap=True)  # the event said the rest
        sys.exit(exc.exit_code)
    except RankLost as exc:  # every rank says it: the dead one's own log may be gone with its machine
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    if result.metrics:  # (empty when a resumed run had nothing left to do)
        shown = {k: _rounded(v) for k, v in result.metrics.items() if "/" in k and not k.startswith(("loss/", "sampler/"))}
        shown_console.print(f"[bold green]done[/] {folder}  {json.dumps(shown)}")


def _torchrun(nproc: int, recipe: str | None, overrides: tuple[str, ...], out_dir: str | None, resume_dir: str | None) -> int:
    """Run this same command under torchrun in ``nproc`` processes; its exit status."""
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "ebmkit", "run"]
    command += [recipe] if recipe is not None else []
    command += [arg for o in overrides for arg in ("--set", o)]
    command += ["--out", out_dir] if out_dir is not None else []
    command += ["--resume", resume_dir] if resume_dir is not None else []
    console.print(f"launching: {' '.join(command[1:])}", soft_wrap=True)
    return subprocess.call(command)


@cli.command()
@click.argument("expression", required=False)
@click.option("--model", "models", multiple=True, metavar="NAME=RUN_DIR", help="A model of the expression: a run folder or checkpoint (repeatable).")
@click.option("--recipe", "compose_file", type=click.Path(dir_okay=False), help="A compose file ([compose], [sampler], [[evaluators]]), or a shipped one's name.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a value, e.g. compose.num_samples=16 (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: a new folder under compositions/).")
def compose(expression: str | None, models: tuple[str, ...], compose_file: str | None, overrides: tuple[str, ...], out_dir: str | None) -> None:
    """Sample a composition of trained models, e.g. "smile + male" --model smile=RUN_DIR --model male=RUN_DIR.

    EXPRESSION combines model names with + (and), - (and not), | (or), weights (2 * a),
    parentheses and .given(class), e.g. "color.given(red) + shape.given(circle)". It is read
    by a small grammar, never run as Python. Writes samples.png, samples.safetensors and
    compose.json (with the evaluators' metrics) to --out.
    """
    from datetime import datetime

    from ebmkit._model import composition as compose_

    if compose_file is not None:
        from ebmkit._recipes.shipped import resolve

        compose_file = str(resolve(compose_file))
    checked = compose_.plan(compose_file, expression, models, overrides)
    folder = Path(out_dir) if out_dir else Path("compositions") / f"{_slug(checked.settings.expression)}-{datetime.now():%Y%m%d-%H%M%S}"
    console.print(f"[bold]ebmkit compose[/] {escape(checked.settings.expression)} -> {folder}", soft_wrap=True)
    record = compose_.compose(checked, folder, console=console, registries=_registries())
    console.print(f"composed {escape(record['energy'])}; wants: {escape(str(record['requirement']))}", soft_wrap=True)
    shown = {k: _rounded(v) for k, v in record["metrics"].items()}
    console.print(f"[bold green]done[/] {folder}  {json.dumps(shown)}", soft_wrap=True)


@cli.command("eval")
@click.argument("path", metavar="RUN_DIR")
@click.option("--evaluator", "names", multiple=True, metavar="NAME", help="An evaluator to run, e.g. fid or sample_grid (repeatable).")
@click.option("--set", "overrides", multiple=True, metavar="PARAM=VALUE", help="A parameter of the evaluator (NAME.PARAM=VALUE for one of several; repeatable).")
@click.option("--raw", is_flag=True, help="Evaluate the raw weights rather than the EMA weights.")
@click.option("--device", help="Run on this device (default: the run's).")
def eval_(path: str, names: tuple[str, ...], overrides: tuple[str, ...], raw: bool, device: str | None) -> None:
    """Run evaluators on a finished run (its latest checkpoint) or a checkpoint folder; figures
    and metrics go to the run folder."""
    from ebmkit._model.evaluate import evaluate

    metrics = evaluate(path, names, overrides, ema=not raw, device=device, console=console, registries=_registries())
    for key, value in metrics.items():
        shown = escape(value) if isinstance(value, str) else f"{value:.6g}"
        console.print(f"{escape(key)}: {shown}", soft_wrap=True)


@cli.command("sample")
@click.argument("path", metavar="RUN_DIR")
@click.option("-n", "num_samples", type=click.IntRange(min=1), default=64, show_default=True, help="How many samples.")
@click.option("--sampler", help="Another registered sampler instead of the recipe's (with its own defaults).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a value of the run's recipe, e.g. sampler.steps=100 (repeatable).")
@click.option("--steps", type=click.IntRange(min=1), help="The sampler's number of steps.")
@click.option("--cond", metavar="CLASS", help="A class of a conditional model (its name, or its index).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the chains' starts and noise.")
@click.option("--raw", is_flag=True, help="The raw weights rather than the EMA.")
@click.option("--device", help="Where to sample (default: the run's device).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: RUN_DIR/samples/step<N>_seed<S>/).")
def sample_(path: str, num_samples: int, sampler: str | None, overrides: tuple[str, ...], steps: int | None, cond: str | None,
            seed: int, raw: bool, device: str | None, out_dir: str | None) -> None:
    """Draw samples from a trained run (its latest checkpoint, EMA weights) with the run's own
    sampler: samples.png (a grid, small images scaled up; a scatter plot for 2-D points) and
    samples.safetensors. From Python: ebmkit.sample(RUN_DIR, n)."""
    from ebmkit._model.run_samples import sample_run

    drawn = sample_run(path, num_samples, sampler=sampler, overrides=overrides, steps=steps, cond=cond, seed=seed, ema=not raw,
                       device=device, out=out_dir, registries=_registries())
    written = ", ".join(sorted(f.name for f in drawn.out_dir.iterdir() if f.name.startswith("samples.")))
    console.print(f"[bold green]wrote[/] {escape(str(drawn.out_dir))}: {written} ({num_samples} samples of step {drawn.step})", soft_wrap=True)


def _rounded(value: float | str) -> float | str:
    return value if isinstance(value, str) else round(value, 4)


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "composition"


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe value (repeatable).")
@click.option("--no-data", "no_data", is_flag=True, help="Do not read the data: build the rest from the sample shape the dataset declares.")
def validate(recipe: str, overrides: tuple[str, ...], no_data: bool) -> None:
    """Check a recipe (a path, or a shipped recipe's name) without running it: every name and
    parameter, then build every component (on the CPU, with the real data; with --no-data, from
    the sample shape the dataset declares, so that a recipe can be checked away from its data);
    report every problem."""
    from ebmkit._recipes.build import build
    from ebmkit._engine.run import usable_device
    from ebmkit._model import composition
    from ebmkit._recipes.shipped import resolve

    path = resolve(recipe)
    if composition.is_compose_file(path):
        _validate_compose_file(recipe, path, overrides)
        return
    loaded = _load(recipe, overrides)
    components = build(loaded, "cpu", read_data=not no_data)
    count = sum(1 for _ in loaded.specs()) - no_data
    for warning in components.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    try:
        usable_device(loaded.run)
    except EbmkitError as exc:
        console.print(f"[yellow]note:[/] {escape(str(exc))}; it built on the CPU")
    source = loaded.train.init_from
    if source is not None and not Path(source).exists():
        note = f"[train].init_from = {source!r} is not here yet (the run starts from it: train that first)"
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    unread = "; the data was not read" if no_data else ""
    out.print(f"{recipe}: OK ({count} components built{unread})", highlight=False)


def _validate_compose_file(recipe: str, path: Path, overrides: tuple[str, ...]) -> None:
    """The compose file at ``path``: its tables, settings and expression (the models are loaded when composing)."""
    from ebmkit._model import composition

    checked = composition.plan(path, overrides=overrides)
    models = checked.settings.models
    absent = [f"{name} = {folder!r}" for name, folder in models.items() if not Path(folder).exists()]
    if absent:
        console.print(f"[yellow]note:[/] model folders not found here (ebmkit compose needs them): {escape(', '.join(absent))}", soft_wrap=True)
    out.print(f"{recipe}: OK (a compose file: {checked.settings.expression}, {len(models)} models)", highlight=False, soft_wrap=True)


@cli.group(invoke_without_command=True)
@click.pass_context
def recipes(ctx: click.Context) -> None:
    """List the recipes that ship with ebmkit; run one by name (ebmkit run quickstart) or copy it."""
    if ctx.invoked_subcommand is not None:
        return
    from ebmkit._recipes import shipped

    names = shipped.names()
    table = Table(box=None, pad_edge=False)
    table.add_column("recipe", style="bold", no_wrap=True, min_width=max(map(len, names)))
    table.add_column("what it trains", no_wrap=True, overflow="ellipsis")  # one line a recipe, cut to the terminal
    for name in names:
        table.add_row(name, escape(shipped.describe(name, width=200)))
    out.print(table)
    out.print("run one: ebmkit run NAME; copy one to edit: ebmkit recipes copy NAME [DEST]", highlight=False)


@recipes.command("copy")
@click.argument("name")
@click.argument("dest", required=False, type=click.Path())
def recipes_copy(name: str, dest: str | None) -> None:
    """Copy the shipped recipe NAME to DEST (a folder or a file; default ./NAME.toml); never overwrites."""
    from ebmkit._recipes.shipped import copy

    target = copy(name, dest)
    out.print(f"wrote {target}; run it with: ebmkit run {target}", highlight=False, soft_wrap=True)


@cli.command("list")
@click.argument("kind", required=False)
@click.argument("pattern", required=False, default="*")
@click.option("--params", "show_params", is_flag=True, help="Show each component's parameters, requirements and what it provides.")
@click.option("--markdown", is_flag=True, help="Print the recipe reference (every component, its parameters and the runner's tables) as markdown.")
def list_(kind: str | None, pattern: str, show_params: bool, markdown: bool) -> None:
    """List registered components: name, plugin and summary (KIND: energies, samplers, ...)."""
    from ebmkit._host import params as params_

    registries = _registries()
    if markdown:
        from ebmkit._recipes.reference import recipe_reference

        click.echo(recipe_reference(registries), nl=False)
        return
    kinds = [registries[kind].kind.name] if kind else list(registries)
    for k in kinds:
        entries = registries[k].find(pattern)
        table = Table(title=k, title_justify="left", show_edge=False, pad_edge=False)
        for column in ("name", "plugin", "summary"):
            table.add_column(column, overflow="fold")
        for entry in entries:
            summary = entry.summary
            if show_params:
                rows = params_.describe(entry.params)
                summary += "".join(f"\n  {n}: {t} = {d}" for n, t, d in rows)
                summary += f"\n  requires: {', '.join(entry.requires)}" if entry.requires else ""
                summary += f"\n  provides: {', '.join(entry.provides)}" if entry.provides else ""
            aliases = f" ({', '.join(entry.aliases)})" if entry.aliases else ""
            table.add_row(entry.name + aliases, entry.plugin, escape(summary))
        out.print(table)
        out.print()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show the full traceback of plugins that failed to import.")
def plugins(as_json: bool, show_traceback: bool) -> None:
    """Show the loaded plugins, their distributions, and every plugin that failed to load, and why."""
    registries = _registries()
    rows = []
    for name, info in sorted(registries.pm.infos.items()):
        counts = {k: sum(1 for e in r.values() if e.plugin == name) for k, r in registries.items()}
        error = registries.failures.get(name, info.error)
        rows.append({
            "name": name, "distribution": info.distribution, "version": info.version, "module": info.value,
            "components": {k: v for k, v in counts.items() if v}, "error": error,
            "traceback": info.traceback if show_traceback else None,
        })
    if as_json:
        out.print_json(data=rows)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("plugin", "distribution", "module", "components"):
        table.add_column(column, overflow="fold")
    for row in rows:
        provided = ", ".join(f"{v} {k}" for k, v in row["components"].items())
        status = f"[red]failed: {escape(row['error'])}[/]" if row["error"] else provided
        table.add_row(row["name"], f"{row['distribution']} {row['version']}", row["module"], status)
    out.print(table)
    for row in rows:
        if row["traceback"]:
            out.print(f"\n[bold]{row['name']}[/]\n{escape(row['traceback'])}")


@cli.command()
@click.argument("name", required=False)
def hooks(name: str | None) -> None:
    """The hooks a plugin may implement, with their arguments; NAME shows one hook's documentation."""
    import inspect

    from ebmkit._host import hookspecs
    from ebmkit._host.errors import UnknownComponentError

    specs = {n: f for n, f in vars(hookspecs).items() if n.startswith("ebmkit_") and callable(f)}
    if name is not None:
        wanted = name if name.startswith("ebmkit_") else f"ebmkit_{name}"
        if wanted not in specs:
            raise UnknownComponentError("hooks", name, list(specs), command="ebmkit hooks")
        function = specs[wanted]
        out.print(f"[bold]{wanted}{escape(str(inspect.signature(function)))}[/]\n")
        out.print(escape(inspect.cleandoc(function.__doc__ or "")))
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("hook", overflow="fold")
    table.add_column("what it is for", overflow="fold")
    for hook_name, function in specs.items():
        summary = (inspect.cleandoc(function.__doc__ or "").split("\n\n")[0]).replace("\n", " ")
        table.add_row(f"{hook_name}({', '.join(inspect.signature(function).parameters)})", escape(summary))
    out.print(table)
    out.print("\nImplement one with @ebmkit.hookimpl in your plugin module; 'ebmkit hooks NAME' shows its documentation.")


def main() -> None:
    cli(prog_name="ebmkit")


if __name__ == "__main__":
    main()
