"""`python -m kameng` runs the `kameng` command."""

from .cli import main

main()
