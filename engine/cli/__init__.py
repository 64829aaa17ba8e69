"""The `streamhouse` command line: main.py wires argparse to one module per command group."""
