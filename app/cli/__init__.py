"""The `strife` command line: the entry point and its subcommands."""
