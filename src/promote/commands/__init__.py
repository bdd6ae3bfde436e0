"""The `promote` subcommands, one module each; cli.py groups them and owns the exit boundary."""
