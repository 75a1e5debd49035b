"""`python -m piprov` is the `piprov` command."""

from piprov.cli import main

main()
