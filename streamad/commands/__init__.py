"""Subcommands of the streamad CLI, one module each."""
