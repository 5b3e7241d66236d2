"""``python -m decisiongraph``: the same command as ``decisiongraph``."""

from decisiongraph.cli import main

main()
