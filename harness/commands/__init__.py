"""Subcommands of ``aero-win7-harness``.

Each module here exposes ``HELP`` (one line), ``configure(parser)`` and ``execute(args) -> int``.
``harness.cli`` lists them in ``SUBCOMMANDS``.
"""
