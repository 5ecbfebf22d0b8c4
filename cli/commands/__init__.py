"""Subcommands of `omnirec`, one module per pipeline area (each lists its COMMANDS)."""
