"""Issue 14: never lose or silently corrupt data.  One test per rule (see the README's "Bad input and faults").

Outputs (safe files), time axes of the forcing readers, value ranges (inputs, attributes, restarts, checkpoints,
outputs), state and lifecycle, messages of the CLI, and the gradient window's edge cases.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from coupler.run import run_coupling
from dhydro.cli import main

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "coupled"
NGEN = ROOT / "examples" / "ngen"
AORC_NC = NGEN / "data/forcing/cats-27_52_67-2015_12_01-2015_12_30.nc"
CSV27 = NGEN / "data/forcing/cat-27_2015-12-01_00_00_00_2015-12-30_23_00_00.csv"


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def spec_file(tmp_path, hours=48, forcing_cfg=None, outputs=None, record=None, name="spec.yaml") -> Path:
    spec = yaml.safe_load((EX / "catchments.yaml").read_text())
    spec["period"]["end"] = str(pd.Timestamp("2015-12-01") + pd.Timedelta(hours=hours))
    for c in spec["components"].values():
        c["config"] = str(EX / c["config"])
    if forcing_cfg is not None:
        spec["components"]["forcing"]["config"] = str(forcing_cfg)
    spec["outputs"].pop("overwrite", None)
    spec["outputs"].update(path=str(tmp_path / "out.nc"), plots=False, **(outputs or {}))
    if record:
        spec["record"] = record
    p = tmp_path / name
    p.write_text(yaml.safe_dump(spec))
    return p


def forcing_copy(tmp_path, edit, name="forcing") -> Path:
    """A forcing config over a copy of the AORC NetCDF changed by ``edit(ds)``."""
    with xr.open_dataset(AORC_NC, decode_times=False) as ds:
        ds = ds.load()
    edit(ds)
    ds.to_netcdf(tmp_path / f"{name}.nc")
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({"path": str(tmp_path / f"{name}.nc")}))
    return cfg


def nan_at(hour):
    def edit(ds):
        ds["APCP_surface"].values[0, hour] = np.nan
    return edit


# ---------------------------------------------------------------------------------------------------------------
# 1. outputs


def test_a_failing_rerun_leaves_the_complete_output_byte_identical(tmp_path):
    good = spec_file(tmp_path, hours=72)
    run_coupling(good, progress=False)
    out = tmp_path / "out.nc"
    before = sha(out)
    with xr.open_dataset(out) as ds:
        assert ds.sizes["time"] == 72 and ds.attrs["run_status"] == "complete"
    bad = spec_file(tmp_path, hours=72, forcing_cfg=forcing_copy(tmp_path, nan_at(40)), outputs={"overwrite": True},
                    name="bad.yaml")
    with pytest.raises(ValueError, match="NaN"):
        run_coupling(bad, progress=False)
    assert sha(out) == before  # the earlier complete output is untouched
    with xr.open_dataset(tmp_path / "out.partial.nc") as ds:  # what the failed run did is kept beside it
        assert ds.sizes["time"] == 40 and ds.attrs["run_status"].startswith("incomplete")
    # a good rerun with overwrite replaces it and removes nothing else
    run_coupling(spec_file(tmp_path, hours=24, outputs={"overwrite": True}, name="short.yaml"), progress=False)
    with xr.open_dataset(out) as ds:
        assert ds.sizes["time"] == 24


def test_an_existing_output_is_refused_without_overwrite(tmp_path, capsys):
    p = spec_file(tmp_path, hours=24)
    run_coupling(p, progress=False)
    before = sha(tmp_path / "out.nc")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_coupling(p, progress=False)
    assert main(["run", str(p), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert sha(tmp_path / "out.nc") == before
    assert main(["run", str(p), "--quiet", "--overwrite"]) == 0


def test_an_output_path_that_is_a_folder_is_a_clear_error(tmp_path, capsys):
    p = spec_file(tmp_path, hours=24)
    (tmp_path / "out.nc").mkdir()
    assert main(["run", str(p), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a folder" in err and "out.nc" in err and len(err.splitlines()) == 1


def test_a_killed_run_leaves_a_partial_file_that_says_so(tmp_path):
    from coupler.writer import NetcdfAppender

    w = NetcdfAppender(tmp_path / "o.nc", ["a", "b"], None, None, {"q": "m"}, pd.Timestamp("2020-01-01"), {})
    for k in range(3):
        w.add(3600.0 * (k + 1), {"q": np.ones(2)})
    w.flush()
    w.nc.close()  # what a kill leaves: the last synced state, never closed by the run
    assert not (tmp_path / "o.nc").exists()
    with xr.open_dataset(tmp_path / "o.partial.nc") as ds:
        assert ds.attrs["run_status"].startswith("incomplete")
        assert ds.attrs["written_until"] == "2020-01-01 03:00:00" and ds.attrs["steps_written"] == 3


def test_the_record_is_moved_into_place_only_when_the_run_ends_well(tmp_path):
    rec = {"path": str(tmp_path / "rec.nc"), "component": "hydro", "state_every": 24}
    bad = spec_file(tmp_path, hours=72, forcing_cfg=forcing_copy(tmp_path, nan_at(50)), record=rec)
    with pytest.raises(ValueError):
        run_coupling(bad, progress=False)
    assert not (tmp_path / "rec.nc").exists()
    with xr.open_dataset(tmp_path / "rec.partial.nc") as ds:
        assert ds.attrs["run_status"].startswith("incomplete") and ds.sizes["step"] == 2
    run_coupling(spec_file(tmp_path, hours=72, record=rec, outputs={"overwrite": True}, name="ok.yaml"), progress=False)
    with xr.open_dataset(tmp_path / "rec.nc") as ds:
        assert ds.attrs["run_status"] == "complete" and ds.sizes["step"] == 3


def test_restart_files_are_written_atomically(tmp_path, monkeypatch):
    from bmi_dhydro import BmiDeltaModel

    b = BmiDeltaModel()
    b.initialize(str(ROOT / "examples/bmi/cat27_hourly.yaml"))
    path = b.save_state(tmp_path / "r.nc")
    before = sha(path)
    import xarray

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(xarray.Dataset, "to_netcdf", boom)
    with pytest.raises(OSError, match="disk full"):
        b.save_state(path)
    assert sha(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


# ---------------------------------------------------------------------------------------------------------------
# 5. messages of the CLI


def test_invalid_yaml_spec_is_one_line(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text("period: {start: [unclosed\n")
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not valid YAML" in err and "s.yaml" in err and "line" in err


def test_ctrl_c_is_one_line_and_exit_code_130_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    import coupler.run

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(coupler.run, "run_coupling", interrupted)
    assert main(["run", str(tmp_path / "s.yaml")]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interrupted" in err
    try:  # (pytest.raises does not take KeyboardInterrupt)
        main(["--debug", "run", str(tmp_path / "s.yaml")])
        raised = None
    except BaseException as exc:  # noqa: BLE001
        raised = exc
    assert isinstance(raised, KeyboardInterrupt)
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        main(["run", str(tmp_path / "missing.yaml"), "--debug"])


def test_cli_period_errors_are_early_and_clear(capsys):
    assert main(["run", "--start", "2010-01-01", "--end", "2009-01-01"]) == 2
    assert "after --end" in capsys.readouterr().err
    assert main(["run", "--warmup-days", "-5"]) == 2
    assert "--warmup-days" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# 2. time axes of the forcing readers


def csv_with(tmp_path, edit, name="cat-27.csv") -> Path:
    df = pd.read_csv(CSV27)
    df = edit(df)
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


@pytest.mark.parametrize("edit,expect", [
    (lambda df: df.drop(index=range(24 * 5 + 4, 24 * 6 + 4)), r"record 124 \(2015-12-07 04:00:00\) is 25 h after record 123 \(2015-12-06 03:00:00\): 24 record\(s\) missing"),
    (lambda df: pd.concat([df.iloc[:10], df.iloc[9:]]), r"record 10 \(2015-12-01 09:00:00\) is a duplicate"),
    (lambda df: pd.concat([df.iloc[:10], df.iloc[[11, 10]], df.iloc[12:]]), r"record 11 .*not in time order"),
])
def test_csv_reader_refuses_gaps_duplicates_and_disorder(tmp_path, edit, expect):
    from bmi_dhydro.forcing import ForcingTimeError, read_aorc_csv

    p = csv_with(tmp_path, edit)
    with pytest.raises(ForcingTimeError, match=expect) as info:
        read_aorc_csv(p)
    assert str(p) in str(info.value) and "expected strictly increasing records every 1 h" in str(info.value)


def test_netcdf_reader_refuses_a_gap(tmp_path):
    from bmi_dhydro.forcing import ForcingTimeError, read_aorc_netcdf

    def edit(ds):
        ds["Time"].values[:, 100:] += 86400e9  # a day missing from record 100 on

    cfg = forcing_copy(tmp_path, edit)
    with pytest.raises(ForcingTimeError, match=r"forcing.nc: record 100 .*25 h after record 99"):
        read_aorc_netcdf(tmp_path / "forcing.nc")


def test_netcdf_reader_refuses_catchments_with_different_times(tmp_path):
    from bmi_dhydro.forcing import ForcingTimeError, read_aorc_netcdf

    def edit(ds):
        ds["Time"].values[2, 50:] += 3600e9

    forcing_copy(tmp_path, edit)
    with pytest.raises(ForcingTimeError, match="cat-67.*other times.*record 50"):
        read_aorc_netcdf(tmp_path / "forcing.nc")


def test_catchment_forcing_component_refuses_a_gap_in_one_of_its_csv_files(tmp_path):
    from coupler.catchment_forcing import CatchmentForcingBmi

    d = tmp_path / "csv"
    d.mkdir()
    for c in ("cat-27", "cat-52"):
        src = NGEN / f"data/forcing/{c}_2015-12-01_00_00_00_2015-12-30_23_00_00.csv"
        (d / src.name).write_text(src.read_text())
    csv_with(d, lambda df: df.drop(index=range(100, 124)), name="cat-52_2015-12-01_00_00_00_2015-12-30_23_00_00.csv")
    cfg = tmp_path / "f.yaml"
    cfg.write_text(yaml.safe_dump({"path": str(d), "ids": ["cat-27", "cat-52"]}))
    with pytest.raises(ValueError, match=r"cat-52.*record 100 \(2015-12-06 04:00:00\) is 25 h after record 99"):
        CatchmentForcingBmi().initialize(str(cfg))


def test_a_period_longer_than_the_forcing_is_refused_before_the_run(tmp_path):
    p = spec_file(tmp_path, hours=24 * 31)
    with pytest.raises(ValueError, match="last record is at 2015-12-30 23:00:00.*beyond_data: hold"):
        run_coupling(p, progress=False)
    assert not (tmp_path / "out.nc").exists() and not (tmp_path / "out.partial.nc").exists()


def spinup_cfg(tmp_path, forcing_file, time_step=3600) -> Path:
    cfg = yaml.safe_load((NGEN / "config" / "cat-27.yaml").read_text())
    base = NGEN / "config"
    for sec, key in (("model", "checkpoint"), ("units", "table"), ("units", "hydrofabric"), ("units", "attributes_table")):
        v = (cfg.get(sec) or {}).get(key)
        if v:
            cfg[sec][key] = str((base / v).resolve())
    cfg.setdefault("time", {})["time_step"] = time_step
    cfg["warmup"] = {"mode": "spinup", "forcing_file": str(forcing_file)}
    p = tmp_path / "bmi.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_hourly_spinup_forcing_is_refused_by_a_daily_configuration(tmp_path):
    from bmi_dhydro import BmiDeltaModel

    with pytest.raises(ValueError, match=r"records every 3600 s \(1 h\).*time_step 86400"):
        BmiDeltaModel().initialize(str(spinup_cfg(tmp_path, CSV27, time_step=86400)))


def test_spinup_forcing_with_a_gap_is_refused(tmp_path):
    from bmi_dhydro import BmiDeltaModel

    p = csv_with(tmp_path, lambda df: df.drop(index=range(48, 72)))
    with pytest.raises(ValueError, match=r"record 48 .*25 h after record 47"):
        BmiDeltaModel().initialize(str(spinup_cfg(tmp_path, p)))
