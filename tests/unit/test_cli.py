"""The `strife` command line finds its subcommand wherever the top-level flags put it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from app.cli.main import command_of, main, parse


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([], None),
        (["--port", "50070"], None),
        (["certs", "--certs", "c"], "certs"),
        (["--data-dir", "d", "certs", "--certs", "c"], "certs"),
        (["--port", "1", "--banks", "2", "client", "--json", "balance"], "client"),
        (["--port", "not-a-number", "up"], None),  # the real parser says what is wrong
        (["client", "--help"], "client"),
    ],
)
def test_the_subcommand_is_found_after_top_level_flags(argv, command):
    assert command_of(argv) == command


def test_a_subcommand_after_top_level_flags_runs(tmp_path, capsys):
    main(["--data-dir", str(tmp_path / "data"), "certs", "--certs", str(tmp_path / "certs")])
    assert (tmp_path / "certs" / "ca.crt").exists()
    assert "certificates in" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "data_dir", "db"),
    [
        (["--data-dir", "X", "up"], "X", "sqlite"),
        (["up", "--data-dir", "Y"], "Y", "sqlite"),
        (["--db", "postgres", "up"], ".strife", "postgres"),
        (["up", "--db", "postgres"], ".strife", "postgres"),
        (["up"], ".strife", "sqlite"),
        ([], ".strife", "sqlite"),
    ],
)
def test_a_shared_flag_before_the_command_is_kept(argv, data_dir, db):
    args = parse(argv)
    assert Path(args.data_dir) == Path(data_dir)
    assert args.db == db


def test_a_shared_flag_given_nowhere_takes_the_commands_default():
    from app.chaos.main import add_arguments

    chaos = argparse.ArgumentParser()
    add_arguments(chaos)
    assert parse(["chaos"]).banks == chaos.get_default("banks") != parse([]).banks
