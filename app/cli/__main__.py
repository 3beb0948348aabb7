"""`python -m app.cli` is `strife`."""

from app.cli.main import main

main()
