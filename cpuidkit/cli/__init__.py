"""The ``cpuidkit`` command: :mod:`cpuidkit.cli.main` builds the parser from one module per subcommand group.

Surfaces only: domain code never imports this package.
"""
