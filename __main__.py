"""``python -m fuse4d`` runs the command line."""

from fuse4d.cli import main

main()
