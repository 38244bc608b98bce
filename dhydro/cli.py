"""The ``dhydro`` command line: above the model package (``bmi_dhydro``) and the coupler (``coupler``).

    dhydro run [COUPLING.yaml]           the main job (no argument: bundled model on bundled CAMELS basins)
    dhydro train CONFIG.yaml             train a model, write checkpoint + metrics + plots
    dhydro ngen-config HYDROFABRIC ...   write ngen per-catchment configs and a realization
    dhydro regrid weights SRC DST ...    ESMF-format regridding weights
"""

from __future__ import annotations

import argparse
import sys

from coupler import retrain as retrain_cli
from coupler.regrid import cli as regrid_cli


def _cmd_run(args) -> int:
    if args.coupling:
        from coupler.run import run_coupling

        run_coupling(args.coupling, out=args.out, progress=not args.quiet)
        return 0
    from .runjob import DEFAULT_PERIOD, run_camels

    period = (args.start or DEFAULT_PERIOD[0], args.end or DEFAULT_PERIOD[1])
    run_camels(args.checkpoint, args.camels_root, args.basins, period, args.warmup_days, args.out or "dhydro_out",
               progress=not args.quiet, forcing=args.forcing)
    return 0


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

    basins = args.basins
    if args.basins_file:
        basins = [ln.split()[0] for ln in open(args.basins_file).read().splitlines() if ln.strip() and not ln.startswith("#")]
    evaluate_checkpoint(args.checkpoint, args.data, basins, (args.start, args.end), args.warmup_days, args.forcing,
                        args.out, progress=not args.quiet)
    return 0


def _cmd_ngen_config(args) -> int:
    from bmi_dhydro.ngen import write_ngen_configs

    write_ngen_configs(args.hydrofabric, args.out, attributes=args.attributes, forcing_pattern=args.forcing_pattern,
                       checkpoint=args.checkpoint, layer=args.layer, id_field=args.id_field, start=args.start, end=args.end)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dhydro", description="bmi-dhydro: differentiable HBV as a BMI component")
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
    r.add_argument("--out", help="output folder (default dhydro_out)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="training config YAML (schema: bmi_dhydro/train.py)")
    t.add_argument("--resume", action="store_true", help="continue from <output dir>/train_state.pt after an interruption")
    t.add_argument("--data", help="CAMELS folder or CAMELS-style .nc file (overrides data.camels_root)")
    t.add_argument("--out", help="output folder (overrides output.dir)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="skill of a checkpoint over many CAMELS basins (table, CSV, NSE plot)")
    e.add_argument("--checkpoint", help="model checkpoint (default: the bundled model)")
    e.add_argument("--data", help="CAMELS folder or CAMELS-style .nc file (default: the bundled subset)")
    e.add_argument("--forcing", help="forcing product (default: the one the checkpoint was trained on)")
    e.add_argument("--basins", nargs="+", help="basin ids (default: all in the data)")
    e.add_argument("--basins-file", help="text file of basin ids, one per line")
    e.add_argument("--start", default="1995-10-01", help="first day (default 1995-10-01)")
    e.add_argument("--end", default="2010-09-30", help="last day (default 2010-09-30)")
    e.add_argument("--warmup-days", type=int, default=365, help="spin-up days before --start (default 365)")
    e.add_argument("--out", default="dhydro_eval", help="output folder (default dhydro_eval)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_evaluate)

    n = sub.add_parser("ngen-config", help="write ngen per-catchment BMI configs and a realization for a hydrofabric")
    n.add_argument("hydrofabric", help="GeoPackage or GeoJSON with the divides")
    n.add_argument("--out", required=True, help="output folder")
    n.add_argument("--attributes", help="CSV of model attributes per divide id (column 'id')")
    n.add_argument("--forcing-pattern", default="./forcing/{{id}}.csv", help="forcing path pattern for the realization")
    n.add_argument("--checkpoint", help="checkpoint to reference (default: bundled)")
    n.add_argument("--layer", default=None, help="GeoPackage layer (default divides)")
    n.add_argument("--id-field", default=None, help="id column (default divide_id or id)")
    n.add_argument("--start", default="2015-12-01 00:00:00")
    n.add_argument("--end", default="2015-12-30 23:00:00")
    n.set_defaults(func=_cmd_ngen_config)

    regrid_cli.add_parser(sub)
    retrain_cli.add_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as exc:
        print(f"dhydro {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
