"""Shows a run on the console: a rich progress bar in a terminal, plain lines otherwise, and
every evaluation's results."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ebmkit._host.console import escape
from ebmkit._host.hookimpl import hookimpl

#: The name the progress bar is registered under for its run.
NAME = "progress"


class ProgressBar:
    """The bar of one run: registered for the run at its start, unregistered at its end."""

    def __init__(self, run):
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=run.console, disable=not run.live,
        )
        self.task = self.progress.add_task("train", total=run.recipe.train.steps, stats="", completed=run.state.step)
        self.progress.start()

    def show(self, text: str) -> None:
        self.progress.update(self.task, stats=text)

    @hookimpl
    def ebmkit_step_end(self, step):
        self.progress.update(self.task, completed=step)

    @hookimpl
    def ebmkit_run_end(self):
        self.progress.stop()


def show(run, text: str) -> None:
    """Put ``text`` in the run's bar (what the loop is doing between updates, e.g. evaluating)."""
    bar = run.plugin(NAME)
    if bar is not None:
        bar.show(text)


@hookimpl
def ebmkit_run_start(run):
    run.register(ProgressBar(run), NAME)


@hookimpl
def ebmkit_log_metrics(run, step, metrics):
    if "loss" in metrics:  # a training row
        stats = f"loss {metrics['loss']:+.3f}  E+ {metrics['e_pos']:+.3f}"
        stats += f"  E- {metrics['e_neg']:+.3f}" if "e_neg" in metrics else ""
        stats += f"  {metrics['steps_per_s']:.1f} it/s" if "steps_per_s" in metrics else ""
        show(run, stats)
        if not run.live:
            # plain text, not rendered (highlighting the numbers took ~0.5 ms a line, ~5 µs an update at log_every = 100)
            run.console.out(f"step {step}/{run.recipe.train.steps}  {stats}", highlight=False)
        return
    groups: dict[str, list[str]] = {}
    texts: list[str] = []
    for key, value in metrics.items():
        if "/" in key:
            name, metric = key.split("/", 1)
            if isinstance(value, str):  # a protocol line, shown whole under the numbers
                texts.append(f"  {escape(name)} {escape(metric)}: {escape(value)}")
            else:
                groups.setdefault(name, []).append(f"{metric} {value:.4g}")
    for name, shown in groups.items():
        run.console.print(f"[bold]step {step}[/] {name}: {', '.join(shown)}")
    for text in texts:
        run.console.print(text, soft_wrap=True)


@hookimpl
def ebmkit_event(run, event):
    run.console.print(f"[yellow]{escape(event['event'])}:[/] {escape(event.get('message', ''))}", soft_wrap=True)
