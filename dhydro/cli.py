"""The ``dhydro`` command line: above the model package (``bmi_dhydro``) and the coupler (``coupler``).

    dhydro run [COUPLING.yaml]           the main job (no argument: bundled model on bundled CAMELS basins)
    dhydro train CONFIG.yaml             train a model, write checkpoint + metrics + plots
    dhydro ngen-config HYDROFABRIC ...   write ngen per-catchment configs and a realization
    dhydro regrid weights SRC DST ...    ESMF-format regridding weights

Exit codes (the README's "Command line" table):

    0    success
    1    a runtime error: bad input data, missing or existing files, an invalid spec or config, a failed run
    2    a usage error: unknown command or option, a missing or malformed argument (argparse), bad --start/--end
    130  interrupted (Ctrl-C); outputs written so far are kept as partial files

Errors end with one line on stderr; ``--debug`` (anywhere on the line) shows the traceback.  Messages go through
:mod:`logging` to stderr (level INFO by default; ``-v`` DEBUG, ``--log-level`` any level; both anywhere on the
line); results (skill tables, summaries) go to stdout; progress bars go to stderr and ``--quiet`` turns them off.
"""

from __future__ import annotations

import argparse
import sys

from bmi_dhydro._extras import MissingExtraError
from bmi_dhydro.log import configure_logging
from bmi_dhydro.ngen import NGEN_STEPPING
from bmi_dhydro.stepper import STEPPINGS
from coupler import retrain as retrain_cli
from coupler.regrid import cli as regrid_cli


def _cmd_run(args) -> int:
    if args.coupling:
        from coupler.run import run_coupling

        run_coupling(args.coupling, out=args.out, progress=not args.quiet, overwrite=args.overwrite)
        return 0
    from .runjob import DEFAULT_PERIOD, run_camels

    period = (args.start or DEFAULT_PERIOD[0], args.end or DEFAULT_PERIOD[1])
    _check_period(period, args.warmup_days)
    run_camels(args.checkpoint, args.camels_root, args.basins, period, args.warmup_days, args.out or "dhydro_out",
               progress=not args.quiet, forcing=args.forcing)
    return 0


class UsageError(ValueError):
    """A malformed command-line argument that argparse cannot check itself: exit code 2."""


def _check_period(period, warmup_days: int) -> None:
    """``--start``/``--end``/``--warmup-days``: dates, in order, and a non-negative warm-up."""
    import pandas as pd

    dates = []
    for flag, value in zip(("--start", "--end"), period):
        try:
            dates.append(pd.Timestamp(value))
        except (ValueError, TypeError):
            raise UsageError(f"{flag}: expected a date (YYYY-MM-DD), got {value!r}") from None
    if dates[1] < dates[0]:
        raise UsageError(f"--start {period[0]} is after --end {period[1]}")
    if warmup_days < 0:
        raise UsageError(f"--warmup-days: expected 0 or more days, got {warmup_days}")


def _cmd_train(args) -> int:
    from bmi_dhydro.train import load_train_config, train

    cfg, base = load_train_config(args.config)
    if args.data:
        from pathlib import Path

        cfg.data.camels_root = str(Path(args.data).resolve())
    train(cfg, base, progress=not args.quiet, resume=args.resume, out_dir=args.out)
    return 0


def _cmd_evaluate(args) -> int:
    from bmi_dhydro.evaluate import evaluate_checkpoint
    from bmi_dhydro.train import read_basins_file

    basins = args.basins
    if args.basins_file:
        basins = read_basins_file(args.basins_file, "--basins-file")
    evaluate_checkpoint(args.checkpoint, args.data, basins, (args.start, args.end), args.warmup_days, args.forcing,
                        args.out, progress=not args.quiet)
    return 0


def _cmd_ngen_config(args) -> int:
    from bmi_dhydro.ngen import write_ngen_configs

    if args.min_climate_days < 1:
        raise UsageError(f"--min-climate-days: expected 1 or more days, got {args.min_climate_days}")
    write_ngen_configs(args.hydrofabric, args.out, attributes=args.attributes, forcing_pattern=args.forcing_pattern,
                       checkpoint=args.checkpoint, layer=args.layer, id_field=args.id_field, start=args.start, end=args.end,
                       min_climate_days=args.min_climate_days, stepping=args.stepping)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dhydro", description="bmi-dhydro: differentiable HBV as a BMI component",
                                epilog="exit codes: 0 success, 1 runtime error, 2 usage error, 130 interrupted")
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                   help="print the version and exit")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more messages: DEBUG level (anywhere on the line)")
    p.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper,
                   help="level of the messages on stderr (default INFO; anywhere on the line)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the main job (bundled model and data when no coupling spec is given)")
    r.add_argument("coupling", nargs="?", help="coupling spec YAML (optional)")
    r.add_argument("--checkpoint", help="model checkpoint (default: the bundled model)")
    r.add_argument("--camels-root", help="CAMELS v1.2 folder or CAMELS-style .nc file (default: the bundled subset)")
    r.add_argument("--forcing", choices=["daymet", "nldas", "maurer", "maurer_extended"],
                   help="forcing product (default: the one the checkpoint was trained on)")
    r.add_argument("--basins", nargs="+", help="basin ids (default: all bundled)")
    r.add_argument("--start", help="first day (default 1995-10-01)")
    r.add_argument("--end", help="last day (default 2010-09-30)")
    r.add_argument("--warmup-days", type=int, default=365, help="spin-up days before --start (default 365)")
    r.add_argument("--out", help="folder of every file the run writes (default job: dhydro_out; a coupling spec: "
                                 "its output, plots, record and saved weights, instead of the spec's paths)")
    r.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    r.add_argument("--overwrite", action="store_true",
                   help="replace the spec's existing output file (only once the new run ends well); without it an "
                        "existing output is refused. The default job always replaces its own outputs atomically")
    r.set_defaults(func=_cmd_run)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="training config YAML (schema: bmi_dhydro/train.py)")
    t.add_argument("--resume", action="store_true", help="continue from <output dir>/train_state.pt after an interruption")
    t.add_argument("--data", help="CAMELS folder or CAMELS-style .nc file (overrides data.camels_root)")
    t.add_argument("--out", help="output folder (overrides output.dir)")
    t.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="skill of a checkpoint over many CAMELS basins (table, CSV, NSE plot)")
    e.add_argument("--checkpoint", help="model checkpoint (default: the bundled model)")
    e.add_argument("--data", help="CAMELS folder or CAMELS-style .nc file (default: the bundled subset)")
    e.add_argument("--forcing", help="forcing product (default: the one the checkpoint was trained on)")
    e.add_argument("--basins", nargs="+", help="basin ids (default: all in the data)")
    e.add_argument("--basins-file", help="text file of basin ids, one per line ('#' comments and blank lines ignored)")
    e.add_argument("--start", default="1995-10-01", help="first day (default 1995-10-01)")
    e.add_argument("--end", default="2010-09-30", help="last day (default 2010-09-30)")
    e.add_argument("--warmup-days", type=int, default=365, help="spin-up days before --start (default 365)")
    e.add_argument("--out", default="dhydro_eval", help="output folder (default dhydro_eval)")
    e.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_evaluate)

    n = sub.add_parser("ngen-config", help="write ngen per-catchment BMI configs and a realization for a hydrofabric",
                       description="Write OUT/config/<id>.yaml per divide, OUT/realization.json, OUT/attributes.csv "
                                   "(the model attributes of every divide) and OUT/attributes_provenance.csv (where "
                                   "each value came from). Each attribute comes from the first source that has it: "
                                   "climate attributes from the divide's forcing (--forcing-pattern; at least "
                                   "--min-climate-days complete days), area/elevation/slope from the hydrofabric, then "
                                   "the --attributes table, then the nearest CAMELS basin.")
    n.add_argument("hydrofabric", help="GeoPackage or GeoJSON with the divides")
    n.add_argument("--out", required=True, help="output folder")
    n.add_argument("--attributes", help="user CSV of model attributes per divide id (column 'id'): used for what "
                                        "the forcing and the hydrofabric do not give, before the nearest CAMELS basin")
    n.add_argument("--forcing-pattern", default="./forcing/{{id}}.csv",
                   help="forcing path pattern for the realization; also read for the climate attributes (relative to "
                        "the working directory, else to --out; a CSV named <id>*.csv in its folder also matches)")
    n.add_argument("--min-climate-days", type=int, default=365,
                   help="complete days of forcing a divide needs for its climate attributes to come from it "
                        "(default %(default)s; shorter records fall back to the table or CAMELS)")
    n.add_argument("--checkpoint", help="checkpoint to reference (default: bundled)")
    n.add_argument("--layer", default=None, help="GeoPackage layer (default divides)")
    n.add_argument("--id-field", default=None, help="id column (default divide_id or id)")
    n.add_argument("--start", default="2015-12-01 00:00:00", help="realization start time (default %(default)s)")
    n.add_argument("--end", default="2015-12-30 23:00:00", help="realization end time (default %(default)s)")
    n.add_argument("--stepping", default=NGEN_STEPPING, choices=STEPPINGS,
                   help="how ngen's hourly steps drive the daily model (the BMI's stepping; README, Sub-daily stepping): "
                        "daily_release (each day's runoff over the next day), hourly (physics every hour) or "
                        "day_so_far (the day's step re-run on the day so far every hour); default %(default)s")
    n.set_defaults(func=_cmd_ngen_config)

    regrid_cli.add_parser(sub)
    retrain_cli.add_parser(sub)
    return p


#: errors that are the user's input or environment (one line, exit code 1); anything else is a bug (traceback);
#: MissingExtraError: a feature needs an extra that is not installed (the message names it)
KNOWN_ERRORS = (ValueError, KeyError, OSError, RuntimeError, MissingExtraError)
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bmi-dhydro")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _pop_logging_flags(argv: list[str]) -> tuple[list[str], int, str | None]:
    """``-v``/``-vv``/``--verbose`` and ``--log-level L`` (or ``--log-level=L``) anywhere on the line."""
    rest, verbose, level, i = [], 0, None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest += argv[i:]
            break
        if a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"}):
            verbose += 1 if a == "--verbose" else len(a) - 1
        elif a == "--log-level" and i + 1 < len(argv) and argv[i + 1].upper() in LOG_LEVELS:
            level = argv[i + 1].upper()
            i += 1
        elif a.startswith("--log-level=") and a.split("=", 1)[1].upper() in LOG_LEVELS:
            level = a.split("=", 1)[1].upper()
        else:
            rest.append(a)
        i += 1
    return rest, verbose, level


def one_line(exc: BaseException) -> str:
    """An error message on one line (pydantic and others write several)."""
    text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines) or type(exc).__name__


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    argv, verbose, level = _pop_logging_flags(argv)
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits 2 here
    configure_logging(verbose, level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"dhydro {args.command}: interrupted (Ctrl-C); outputs written so far are kept as partial files", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        if debug:
            raise
        parser.print_usage(sys.stderr)
        print(f"dhydro {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KNOWN_ERRORS as exc:
        if debug:
            raise
        kind = "" if isinstance(exc, (ValueError, KeyError, MissingExtraError)) else f"{type(exc).__name__}: "
        print(f"dhydro {args.command}: error: {kind}{one_line(exc)} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001  only YAML errors are known here; anything else is re-raised
        import yaml

        if debug or not isinstance(exc, yaml.YAMLError):
            raise
        print(f"dhydro {args.command}: error: invalid YAML: {one_line(exc)} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
