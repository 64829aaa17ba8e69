"""`streamhouse` subcommands, one module per command group; cli.py wires them to argparse."""
