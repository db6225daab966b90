"""python -m compat."""

from .cli import main

main()
