"""Issue 18: the ``dhydro`` command line follows the usual conventions: ``--version``, ``-v``/``--log-level``
through :mod:`logging`, one name for "no progress bar" (``--quiet``, alias ``--no-progress``), exit code 2 for usage
errors only and 1 for runtime errors, and help text on every option."""

from __future__ import annotations

import argparse
import logging

import pytest

from dhydro.cli import build_parser, main


def _parsers(p: argparse.ArgumentParser, path=("dhydro",)):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _parsers(sp, path + (name,))


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert version("bmi-dhydro") in capsys.readouterr().out


def test_every_option_has_help():
    missing = [f"{' '.join(path)} {a.option_strings or a.dest}"
               for path, p in _parsers(build_parser()) for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
    assert missing == []


def test_no_progress_bar_has_one_name_everywhere():
    for path, p in _parsers(build_parser()):
        flags = {s for a in p._actions for s in a.option_strings}
        if "--quiet" in flags or "--no-progress" in flags:
            assert {"--quiet", "--no-progress"} <= flags, path  # --quiet, with --no-progress as its alias
    args = build_parser().parse_args(["regrid", "apply", "w.nc", "f.nc", "--var", "x", "-o", "o.nc", "--quiet"])
    assert args.no_progress
    assert build_parser().parse_args(["run", "--no-progress"]).quiet


@pytest.mark.parametrize("flags,level", [([], logging.INFO), (["-v"], logging.DEBUG),
                                         (["--log-level", "warning"], logging.WARNING),
                                         (["--log-level=ERROR"], logging.ERROR)])
def test_verbose_and_log_level_configure_logging(flags, level, monkeypatch):
    import dhydro.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "_cmd_run", lambda args: seen.setdefault("level", logging.getLogger().level) and 0)
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["run"].set_defaults(func=cli._cmd_run)
    assert main(["run", *flags]) == 0  # anywhere on the line: after the subcommand
    assert seen["level"] == level


def test_messages_go_through_logging_to_stderr(capsys):
    import dhydro.cli as cli

    cli.configure_logging(0, "INFO")
    logging.getLogger("dhydro.test").info("hello")
    logging.getLogger("dhydro.test").debug("hidden")
    logging.getLogger("dhydro.test").warning("careful")
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.splitlines() == ["hello", "warning: careful"]


def test_exit_codes_usage_2_runtime_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--no-such-option"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert main(["run", "--start", "not-a-date"]) == 2  # a malformed argument is a usage error
    assert main(["run", str(tmp_path / "missing.yaml")]) == 1  # a runtime error
    assert main(["regrid", "info", str(tmp_path / "missing.nc")]) == 1
    err = capsys.readouterr().err
    assert "missing.yaml" in err and "Traceback" not in err
