"""`python -m retrain.cli`: the `retrain` program."""

from retrain.cli import main

main()
