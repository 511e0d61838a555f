"""``ebmkit new-plugin NAME``: scaffolds a plugin package, through the command-line hook."""

from __future__ import annotations

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_commands(cli):
    from ebmkit.plugins.scaffold.command import new_plugin

    cli.add_command(new_plugin)
