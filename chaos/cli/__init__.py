"""The command line interface (typer). Only this package imports typer."""

from __future__ import annotations


def main() -> None:
    from chaos.cli.app import main as _main

    _main()
