"""Golden series of the bundled model, a tiny training smoke test, and the CLI's main job."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bmi_dhydro.checkpoint import load_checkpoint
from dhydro.cli import main
from bmi_dhydro.datasets import read_camels
from bmi_dhydro.train import TrainConfig, load_train_config, simulate, train

DATA = Path(__file__).parent / "data"


def test_golden_series_of_bundled_model():
    """Guards the physics, the network and the data path together (recorded from the bundled checkpoint by
    tools/make_golden.py; regenerate it only when the bundled model changes on purpose)."""
    golden = pd.read_csv(DATA / "golden_bundled_wy1996.csv")
    m, _ = load_checkpoint()
    ds = read_camels(basins=["01333000", "09035900"], product="daymet", attributes=m.config.attributes)
    res, times = simulate(m, ds, "1995-10-01", "1996-09-30", 365)
    assert len(times) == len(golden) == 366
    for i, b in enumerate(["01333000", "09035900"]):
        np.testing.assert_allclose(res["runoff"][i], golden[f"runoff_{b}"], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(res["et"][i], golden[f"et_{b}"], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(res["swe"][i], golden[f"swe_{b}"], rtol=2e-5, atol=1e-5)
    assert res["runoff"][1].max() > 1.0  # a real hydrograph, not a flat line


def test_tiny_training_smoke(tmp_path):
    cfg = TrainConfig.model_validate({
        "data": {"basins": ["01022500", "09035900", "06221400"]},
        "periods": {"train": ["2001-10-01", "2003-09-30"], "test": ["2003-10-01", "2004-09-30"], "warmup_days": 60},
        "model": {"nmul": 2, "lstm_hidden": 8, "mlp_hidden": 16},
        "training": {"epochs": 2, "iterations_per_epoch": 2, "batch_basins": 3, "window_days": 60, "window_warmup_days": 60, "seed": 3},
        "output": {"dir": str(tmp_path / "out")},
    })
    r1 = train(cfg, tmp_path, progress=False)
    out = tmp_path / "out"
    for f in ("model.pt", "metrics_test.csv", "metrics_validation.csv", "history.csv", "loss.png", "hydrograph_01022500.png"):
        assert (out / f).exists(), f
    m, payload = load_checkpoint(out / "model.pt")
    assert payload["provenance"]["data"]["basins"] == ["01022500", "09035900", "06221400"]
    assert len(payload["provenance"]["history"]) == 2
    # the seed makes it deterministic
    cfg2 = cfg.model_copy(deep=True)
    cfg2.output.dir = str(tmp_path / "out2")
    r2 = train(cfg2, tmp_path, progress=False)
    drop = ("it_per_s",)  # wall-clock rates differ between runs
    assert [{k: v for k, v in h.items() if k not in drop} for h in r1["history"]] == \
        [{k: v for k, v in h.items() if k not in drop} for h in r2["history"]]


def test_train_config_rejects_unknown_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  epochz: 3\n")
    with pytest.raises(ValueError, match="epochz"):
        load_train_config(p)


def test_dhydro_run_main_job(tmp_path, capsys):
    # NLDAS forcing (bundled for these basins, 02064000 only for 2000-2002): a product the model was not trained on
    rc = main(["run", "--start", "2012-10-01", "--end", "2013-09-30", "--basins", "01022500", "02064000", "09035900",
               "--forcing", "nldas", "--out", str(tmp_path)])
    assert rc == 0
    cap = capsys.readouterr()
    text = cap.out  # results on stdout, messages (logging) on stderr
    assert "02064000" in cap.err and "skipped" in cap.err  # no forcing in the period: said, not silently dropped
    assert "median" in text
    ds = xr.open_dataset(tmp_path / "dhydro_run.nc")
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["featureType"] == "timeSeries"
    assert ds["streamflow"].attrs["units"] == "m3 s-1"
    assert ds.sizes["time"] == 365 and list(ds["unit_id"].values) == ["01022500", "09035900"]
    for v in ("et", "swe", "soil_moisture", "upper_zone_storage", "lower_zone_storage", "snowpack"):
        assert v in ds and np.isfinite(ds[v]).all()
    ds.close()
    assert (tmp_path / "hydrographs.png").stat().st_size > 10_000


def test_cli_errors_are_clear(tmp_path, capsys):
    rc = main(["train", str(tmp_path / "nope.yaml")])
    assert rc == 1  # a runtime error (a missing file); 2 is kept for usage errors
    assert "nope.yaml" in capsys.readouterr().err
