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
    assert main(["run", str(p), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert sha(tmp_path / "out.nc") == before
    assert main(["run", str(p), "--quiet", "--overwrite"]) == 0


def test_an_output_path_that_is_a_folder_is_a_clear_error(tmp_path, capsys):
    p = spec_file(tmp_path, hours=24)
    (tmp_path / "out.nc").mkdir()
    assert main(["run", str(p), "--quiet"]) == 1
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
        assert ds.attrs["run_status"].startswith("incomplete") and ds.sizes["time"] == 2
    run_coupling(spec_file(tmp_path, hours=72, record=rec, outputs={"overwrite": True}, name="ok.yaml"), progress=False)
    with xr.open_dataset(tmp_path / "rec.nc") as ds:
        assert ds.attrs["run_status"] == "complete" and ds.sizes["time"] == 3


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
    assert main(["run", str(p)]) == 1
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


# ---------------------------------------------------------------------------------------------------------------
# 3. values: inputs, attributes, restart states, checkpoint weights, outputs

from bmi_dhydro import BmiDeltaModel  # noqa: E402
from bmi_dhydro.forcing import PET, PRECIP, PRESSURE, SHORTWAVE, TEMP  # noqa: E402

CAT27 = ROOT / "examples/bmi/cat27_hourly.yaml"
FIXED_DAILY = ROOT / "examples/bmi/fixed_daily.yaml"


def cfg_of(path: Path) -> dict:
    """A BMI config with absolute paths (rewritable anywhere)."""
    cfg = yaml.safe_load(path.read_text())
    for sec, key in (("model", "checkpoint"), ("units", "table"), ("units", "hydrofabric"), ("units", "attributes_table"),
                     ("warmup", "restart_file"), ("warmup", "forcing_file")):
        v = (cfg.get(sec) or {}).get(key)
        if v:
            cfg[sec][key] = str((path.parent / v).resolve())
    return cfg


def make_bmi(tmp_path, base=CAT27, name="c.yaml", **changes) -> BmiDeltaModel:
    cfg = cfg_of(base)
    for dotted, value in changes.items():
        sec, _, key = dotted.partition("__")
        if key:
            cfg.setdefault(sec, {})[key] = value
        else:
            cfg[sec] = value
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    b = BmiDeltaModel()
    b.initialize(str(p))
    return b


def feed(b, p=1e-4, t=280.0, n=1):
    for _ in range(n):
        b.set_value(PRECIP, np.full(b.n, p))
        b.set_value(TEMP, np.full(b.n, t))
        b.update()


def test_precipitation_above_the_plausibility_bound_is_an_error_naming_the_option(tmp_path):
    b = make_bmi(tmp_path)
    b.set_value(PRECIP, np.array([5.0]))  # 5 mm s-1: 5 mm h-1 given as mm s-1
    b.set_value(TEMP, np.array([280.0]))
    with pytest.raises(ValueError, match=r"above the plausibility bound max_precip_rate = 0.1 mm s-1"):
        b.update()
    b.set_value(PRECIP, np.array([0.05]))  # below the default bound: runs
    b.update()
    lenient = make_bmi(tmp_path, name="l.yaml", max_precip_rate=10.0)
    feed(lenient, p=5.0)
    zero = make_bmi(tmp_path, name="z.yaml", bad_precip="zero")  # the zero option is for missing values only
    zero.set_value(PRECIP, np.array([5.0]))
    zero.set_value(TEMP, np.array([280.0]))
    with pytest.raises(ValueError, match="max_precip_rate"):
        zero.update()


@pytest.mark.parametrize("bad", [-1e-8, np.inf, -np.inf])
def test_negative_or_infinite_input_pet_is_an_error_and_nan_means_not_set(tmp_path, bad):
    b = make_bmi(tmp_path)
    b.set_value(PET, np.array([bad]))
    b.set_value(PRECIP, np.array([0.0]))
    b.set_value(TEMP, np.array([280.0]))
    with pytest.raises(ValueError, match=PET):
        b.update()
    b.set_value(PET, np.array([np.nan]))  # not set: the internal method is used
    b.update()


@pytest.mark.parametrize("name,value", [(SHORTWAVE, -5.0), (PRESSURE, 1013.0)])
def test_shortwave_and_pressure_have_physical_ranges(tmp_path, name, value):
    b = make_bmi(tmp_path, **{"model__pet_method": "priestley_taylor"}, base=FIXED_DAILY)
    for n, v in ((PRECIP, 0.0), (TEMP, 280.0), (SHORTWAVE, 200.0), (PRESSURE, 100000.0)):
        b.set_value(n, np.full(b.n, v))
    b.set_value(name, np.full(b.n, value))
    with pytest.raises(ValueError, match=name):
        b.update()


@pytest.mark.parametrize("key,value,expect", [("area_km2", 0.0, "area_km2 expected finite values > 0"),
                                              ("area_km2", -3.0, "area_km2"), ("area_km2", float("nan"), "area_km2"),
                                              ("lat", 95.0, "lat expected degrees north in -90..90"),
                                              ("lat", float("nan"), "lat expected")])
def test_impossible_unit_attributes_are_refused_at_initialize(tmp_path, key, value, expect):
    cfg = cfg_of(FIXED_DAILY)
    cfg["units"][key] = [value] * len(cfg["units"][key])
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=expect):
        BmiDeltaModel().initialize(str(p))


def _restart_with(tmp_path, b, edit) -> Path:
    path = b.save_state(tmp_path / "r.nc")
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    edit(ds)
    bad = tmp_path / "bad.nc"
    ds.to_netcdf(bad)
    return bad


@pytest.mark.parametrize("var,value,expect", [("hbv_sm", np.nan, "hbv_sm expected finite storage"),
                                              ("hbv_slz", -5.0, "hbv_slz expected finite storage in 0..1e6 mm"),
                                              ("lstm_c", np.inf, "lstm_c expected finite values"),
                                              ("mass_in", np.nan, "mass_in")])
def test_restart_with_nan_or_negative_states_is_refused(tmp_path, var, value, expect):
    b = make_bmi(tmp_path)
    feed(b, n=30)

    def edit(ds):
        ds[var].values.reshape(-1)[0] = value

    bad = _restart_with(tmp_path, b, edit)
    before = b.stepper.state_arrays()
    with pytest.raises(ValueError, match=f"bad.nc.*{expect}"):
        b.load_state(bad)
    for k, v in b.stepper.state_arrays().items():
        np.testing.assert_array_equal(v, before[k])


def test_checkpoint_with_nan_weights_is_refused_at_load(tmp_path):
    import torch

    from bmi_dhydro.checkpoint import CheckpointError, default_checkpoint_path, load_checkpoint

    payload = torch.load(default_checkpoint_path(), weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    payload["state_dict"][key] = payload["state_dict"][key].clone()
    payload["state_dict"][key].view(-1)[0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=f"nan.pt.*{key}.*non-finite"):
        load_checkpoint(tmp_path / "nan.pt")


def test_non_finite_outputs_never_leave_the_model(tmp_path, monkeypatch):
    from bmi_dhydro.bmi_vars import NonFiniteOutputError, RUNOFF_DEPTH

    b = make_bmi(tmp_path, base=FIXED_DAILY)
    feed(b)
    before = b.get_value_ptr(RUNOFF_DEPTH).copy()
    orig = b.model.advance_numpy

    def poisoned(*a, **k):
        state, out = orig(*a, **k)
        out["runoff"] = out["runoff"] * np.nan
        return state, out

    monkeypatch.setattr(b.model, "advance_numpy", poisoned)
    monkeypatch.setattr(b.model, "advance", lambda *a, **k: (_ for _ in ()).throw(AssertionError("numpy path expected")))
    t_before, state_before = b.get_current_time(), b.stepper.state_arrays()
    with pytest.raises(NonFiniteOutputError, match="output runoff is nan"):
        feed(b)
    np.testing.assert_array_equal(b.get_value_ptr(RUNOFF_DEPTH), before)  # the NaN never reached the buffer
    # ... and the failed update was rolled back: clock, stores, accumulators and mass accounting as before it
    assert b.get_current_time() == t_before
    state_after = b.stepper.state_arrays()
    assert state_after.keys() == state_before.keys()
    for k in state_before:
        np.testing.assert_array_equal(np.asarray(state_after[k]), np.asarray(state_before[k]), err_msg=k)
    monkeypatch.undo()  # the fault is gone: the run goes on from where it was
    feed(b)
    assert np.isfinite(b.get_value_ptr(RUNOFF_DEPTH)).all() and b.get_current_time() > t_before


# ---------------------------------------------------------------------------------------------------------------
# 4. state and lifecycle


def test_restart_from_a_run_with_another_start_date_is_refused(tmp_path):
    b = make_bmi(tmp_path)
    feed(b, n=5)
    path = b.save_state(tmp_path / "r.nc")
    other = make_bmi(tmp_path, name="o.yaml", time__start="2015-12-02 00:00:00")
    with pytest.raises(ValueError, match="starts at 2015-12-01 00:00:00.*PET day of year"):
        other.load_state(path)
    same = make_bmi(tmp_path, name="s.yaml")
    same.load_state(path)
    assert same.get_current_time() == 5 * 3600.0


def test_restart_from_another_model_is_refused(tmp_path):
    from bmi_dhydro.checkpoint import default_checkpoint_path, load_checkpoint, save_checkpoint

    b = make_bmi(tmp_path)
    feed(b, n=5)
    path = b.save_state(tmp_path / "r.nc")
    model, payload = load_checkpoint()
    save_checkpoint(model, tmp_path / "other.pt", provenance={"note": "another model"})
    other = make_bmi(tmp_path, name="o.yaml", model={"checkpoint": str(tmp_path / "other.pt")})
    with pytest.raises(ValueError, match="another model"):
        other.load_state(path)
    with xr.open_dataset(path) as ds:
        assert ds.attrs["start"] == "2015-12-01 00:00:00" and ds.attrs["model_identity"].startswith("checkpoint sha256")
        assert ds.attrs["time_step_s"] == 3600.0 and list(ds["unit_id"].values) == ["cat-27"]
    assert default_checkpoint_path().exists()


def test_truncated_or_foreign_restart_files_name_the_file(tmp_path):
    b = make_bmi(tmp_path)
    feed(b, n=3)
    path = b.save_state(tmp_path / "r.nc")
    raw = path.read_bytes()
    (tmp_path / "trunc.nc").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"trunc.nc: cannot read"):
        b.load_state(tmp_path / "trunc.nc")
    (tmp_path / "foreign.nc").write_text("hello")
    with pytest.raises(ValueError, match=r"foreign.nc: cannot read the file as a bmi-dhydro NetCDF restart"):
        b.load_state(tmp_path / "foreign.nc")

    def drop(ds):
        del ds["hbv_suz"]

    bad = _restart_with(tmp_path, b, drop)
    with pytest.raises(ValueError, match=r"bad.nc: the restart lacks the state variable\(s\) \['hbv_suz'\]"):
        b.load_state(bad)


def test_ngen_payload_carries_a_checksum(tmp_path):
    from bmi_dhydro.bmi_vars import SER_CREATE, SER_SIZE, SER_STATE

    b = make_bmi(tmp_path)
    feed(b, n=7)
    b.set_value(SER_CREATE, np.array([1], dtype="int32"))
    payload = b.get_value_ptr(SER_STATE).copy()
    fresh = make_bmi(tmp_path, name="f.yaml")
    flipped = payload.copy()
    flipped[-40] ^= 0x01  # one bit inside the arrays
    fresh.set_value(SER_SIZE, np.array([flipped.size], dtype="int64"))
    with pytest.raises(ValueError, match="checksum"):
        fresh.set_value(SER_STATE, flipped)
    assert fresh.get_current_time() == 0.0
    fresh.set_value(SER_SIZE, np.array([payload.size], dtype="int64"))
    fresh.set_value(SER_STATE, payload)
    assert fresh.get_current_time() == 0.0  # ngen (PR #957) semantics: the clock restarts at the restored state
    np.testing.assert_array_equal(fresh.get_value_ptr("hbv__soil_moisture_storage"), b.get_value_ptr("hbv__soil_moisture_storage"))
    late = make_bmi(tmp_path, name="late.yaml", time__start="2016-01-01 00:00:00")
    late.set_value(SER_SIZE, np.array([payload.size], dtype="int64"))
    with pytest.raises(ValueError, match="starts at"):
        late.set_value(SER_STATE, payload)


def test_update_after_finalize_is_an_error(tmp_path):
    b = make_bmi(tmp_path)
    feed(b)
    b.finalize()
    for call in (b.update, lambda: b.update_until(7200.0), lambda: b.set_value(PRECIP, np.zeros(1)),
                 lambda: b.save_state(tmp_path / "x.nc")):
        with pytest.raises(RuntimeError, match="after finalize"):
            call()


def test_update_until_the_end_time_or_too_far_is_refused(tmp_path):
    b = make_bmi(tmp_path)
    b.set_value(PRECIP, np.zeros(1))
    b.set_value(TEMP, np.full(1, 280.0))
    with pytest.raises(ValueError, match="end time of this open-ended component"):
        b.update_until(b.get_end_time())
    with pytest.raises(ValueError, match="cannot be reached"):
        b.update_until(3600.0 * 1e9)
    assert b.get_current_time() == 0.0
    b.update_until(3 * 3600.0)
    assert b.get_current_time() == 3 * 3600.0


# ---------------------------------------------------------------------------------------------------------------
# 6. the gradient window


def test_a_state_restore_closes_the_gradient_window(tmp_path):
    b = make_bmi(tmp_path)
    feed(b, n=24)
    path = b.save_state(tmp_path / "r.nc")
    b.begin_gradient_window()
    feed(b, n=24)
    assert b.get_gradient_window_size() == 1
    b.load_state(path)
    assert b.get_gradient_window_size() == 0
    with pytest.raises(ValueError, match="no gradient window"):
        b.compute_gradients({"land_surface_water__runoff_depth": np.ones((1, 1))})


def test_parameter_or_checkpoint_changes_inside_a_window_are_refused_and_a_window_can_be_closed(tmp_path):
    from bmi_dhydro.checkpoint import default_checkpoint_path

    f = make_bmi(tmp_path, base=FIXED_DAILY)
    f.begin_gradient_window()
    feed(f)
    with pytest.raises(ValueError, match="gradient window is open"):
        f.set_value("FC", np.full(f.n, 200.0))
    g = f.compute_gradients({"land_surface_water__runoff_depth": np.ones((1, f.n))})
    assert np.isfinite(g["FC"]).all()
    f.end_gradient_window()
    assert f.get_gradient_window_size() == 0
    f.set_value("FC", np.full(f.n, 200.0))  # allowed once the window is closed
    n = make_bmi(tmp_path, name="n.yaml")
    n.begin_gradient_window()
    with pytest.raises(ValueError, match="gradient window is open"):
        n.load_checkpoint(default_checkpoint_path())
    n.end_gradient_window()
    n.load_checkpoint(default_checkpoint_path())


def test_fixed_mode_gradients_work_with_routing_off_and_under_no_grad(tmp_path):
    import torch

    b = make_bmi(tmp_path, base=FIXED_DAILY, model=dict(cfg_of(FIXED_DAILY)["model"], routing=False))
    b.begin_gradient_window()
    feed(b, n=3)
    seeds = {"land_surface_water__runoff_depth": np.ones((3, b.n))}
    g = b.compute_gradients(seeds)
    assert np.isfinite(g["FC"]).all() and "route_a" in g
    with torch.no_grad():
        g2 = b.compute_gradients(seeds)
    np.testing.assert_array_equal(g["FC"], g2["FC"])


def test_catchment_csv_files_with_different_time_axes_are_refused(tmp_path):
    from coupler.catchment_forcing import CatchmentForcingBmi

    d = tmp_path / "csv"
    d.mkdir()
    for c in ("cat-27", "cat-52"):
        src = NGEN / f"data/forcing/{c}_2015-12-01_00_00_00_2015-12-30_23_00_00.csv"
        (d / src.name).write_text(src.read_text())
    csv_with(d, lambda df: df.iloc[:-24], name="cat-52_2015-12-01_00_00_00_2015-12-30_23_00_00.csv")  # a day short
    cfg = tmp_path / "f.yaml"
    cfg.write_text(yaml.safe_dump({"path": str(d), "ids": ["cat-27", "cat-52"]}))
    with pytest.raises(ValueError, match=r"cat-52.*696 records.*cat-27.*720 records.*share one time axis"):
        CatchmentForcingBmi().initialize(str(cfg))


def test_a_foreign_forcing_file_is_named_in_the_error(tmp_path):
    from bmi_dhydro.forcing import read_aorc_netcdf

    (tmp_path / "junk.nc").write_text("not netcdf at all")
    with pytest.raises(ValueError, match="junk.nc: cannot be read as ngen per-catchment NetCDF forcing"):
        read_aorc_netcdf(tmp_path / "junk.nc")


def test_metrics_and_plots_are_written_atomically(tmp_path):
    """A metrics table or a plot whose writing fails part-way leaves the earlier file byte-identical and no
    temporary file behind (the default job, `dhydro evaluate`, training and the coupler use these writers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bmi_dhydro.safe_io import save_figure
    from bmi_dhydro.train import write_metrics_csv

    csv_path = tmp_path / "metrics.csv"
    write_metrics_csv(csv_path, [{"basin": "01013500", "nse": 0.7, "kge": 0.6, "pbias": 1.0, "n_obs": 10}])
    before = csv_path.read_bytes()
    rows = [{"basin": "01013500", "nse": 0.1, "kge": 0.1, "pbias": 0.0, "n_obs": 1}, {"basin": "x", "bogus": 1}]
    with pytest.raises(ValueError, match="bogus"):  # DictWriter refuses the second row after the first was written
        write_metrics_csv(csv_path, rows)
    assert csv_path.read_bytes() == before

    png = tmp_path / "hydrographs.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    save_figure(fig, png, dpi=50)
    before = png.read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n"
    real = fig.savefig

    def half_then_fail(path, **kw):
        real(path, **kw)
        with open(path, "r+b") as f:
            f.truncate(100)
        raise OSError("disk full")

    fig.savefig = half_then_fail
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, png, dpi=50)
    plt.close(fig)
    assert png.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hydrographs.png", "metrics.csv"]


def test_spinup_forcing_must_make_whole_model_steps(tmp_path):
    from bmi_dhydro import BmiDeltaModel

    p = csv_with(tmp_path, lambda df: df.iloc[:30])  # 30 hourly records: one day and 6 hours of a daily model
    with pytest.raises(ValueError, match=r"30 records of 3600 s do not make whole model steps of 86400 s.*multiple of 24"):
        BmiDeltaModel().initialize(str(spinup_cfg(tmp_path, p)))


def test_spinup_runs_on_its_own_records_clock(tmp_path):
    """The PET day of year during a spin-up follows the spin-up forcing's dates, not the run's start date: the same
    spin-up records give the same stores whatever the configured run start."""
    from bmi_dhydro import BmiDeltaModel

    p = csv_with(tmp_path, lambda df: df.iloc[:240])  # ten days of December 2015
    states = []
    for start in ("2015-12-01 00:00:00", "2016-06-15 00:00:00"):
        cfg = yaml.safe_load(spinup_cfg(tmp_path, p).read_text())
        cfg["time"]["start"] = start
        cfg.setdefault("time", {}).pop("end", None)
        f = tmp_path / f"s{start[:10]}.yaml"
        f.write_text(yaml.safe_dump(cfg))
        b = BmiDeltaModel()
        b.initialize(str(f))
        assert b.get_current_time() == 0.0
        states.append(b.stepper.state_arrays())
        b.finalize()
    for k in states[0]:
        if k.startswith("hbv_"):
            np.testing.assert_array_equal(states[0][k], states[1][k], err_msg=k)
