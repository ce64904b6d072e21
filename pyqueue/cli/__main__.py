"""`python -m pyqueue.cli`, as the `pyqueue` command."""

from pyqueue.cli import main

main()
