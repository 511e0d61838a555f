"""``python -m ebmkit``: the command line, also as torchrun launches it."""

from ebmkit.cli import main

main()
