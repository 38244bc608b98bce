"""Large-sample data and training: the two CAMELS readers agree, Hargreaves on real data, resumable training,
validation split and model selection."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bmi_dhydro import physics
from bmi_dhydro.datasets import bundled_camels_root, model_forcings, open_camels, read_camels, read_camels_netcdf

DATA = Path(__file__).parent / "data"
SUBSET_NC = DATA / "camels_daymet_subset.nc"
ATTRS = ["p_mean", "aridity", "area_gages2", "sand_frac", "high_prec_freq"]


@pytest.fixture(scope="module")
def text_root_02064000(tmp_path_factory):
    """A CAMELS v1.2 text layout holding the verbatim Daymet file of 02064000 (neuralhydrology test data)."""
    root = tmp_path_factory.mktemp("camels")
    (root / "basin_mean_forcing" / "daymet" / "03").mkdir(parents=True)
    shutil.copy(DATA / "camels_extra" / "daymet" / "03" / "02064000_lump_cida_forcing_leap.txt",
                root / "basin_mean_forcing" / "daymet" / "03")
    (root / "usgs_streamflow" / "03").mkdir(parents=True)
    shutil.copy(bundled_camels_root() / "usgs_streamflow" / "03" / "02064000_streamflow_qc.txt", root / "usgs_streamflow" / "03")
    shutil.copytree(bundled_camels_root() / "camels_attributes_v2.0", root / "camels_attributes_v2.0")
    return root


def _same(a, b, period):
    a = a.sel(time=slice(*period))
    b = b.sel(time=slice(*period))
    assert list(a.basin.values) == list(b.basin.values)
    assert (a.time.values == b.time.values).all() and a.sizes["time"] > 300
    for v in ("prcp", "tmax", "tmin", "srad", "dayl", "vp", "qobs", "lat", "lon", "area_km2", *ATTRS):
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=1e-12, atol=1e-9, err_msg=v)
    assert (a["huc_02"].values == b["huc_02"].values).all()


def test_text_and_netcdf_readers_agree_on_a_verbatim_camels_file(text_root_02064000):
    txt = read_camels(text_root_02064000, ["02064000"], "daymet", ATTRS)
    nc = read_camels_netcdf(SUBSET_NC, ["02064000"], ATTRS)
    _same(txt, nc, ("2000-01-01", "2002-12-31"))
    assert txt.attrs["product"] == nc.attrs["product"] == "daymet"
    # streamflow converted from cfs with the header / file area: a known value (79 cfs on 2000-01-01)
    assert nc["qobs"].sel(time="2000-01-01").item() == pytest.approx(79.0 * 0.3048**3 * 86400 / 427165365 * 1000, rel=1e-12)


def test_bundled_daymet_subset_equals_the_netcdf():
    txt = open_camels(None, ["03010655"], "daymet", ATTRS)
    nc = open_camels(SUBSET_NC, ["03010655"], "daymet", ATTRS)
    _same(txt, nc, ("1999-10-01", "2003-09-30"))


def test_netcdf_reads_only_the_requested_basins_and_period():
    ds = read_camels_netcdf(SUBSET_NC, ["03010655"], ATTRS, start="2001-01-01", end="2001-12-31")
    assert ds.sizes == {"basin": 1, "time": 365}


def test_reader_errors_name_what_is_missing(tmp_path, text_root_02064000):
    with pytest.raises(FileNotFoundError, match="forcing product 'maurer'.*products under.*daymet"):
        read_camels(text_root_02064000, ["02064000"], "maurer", ATTRS)
    with pytest.raises(KeyError, match="99999999"):
        read_camels_netcdf(SUBSET_NC, ["99999999"], ATTRS)
    with pytest.raises(ValueError, match="expected 'nldas'.*holds 'daymet'"):
        open_camels(SUBSET_NC, ["03010655"], "nldas", ATTRS)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_camels_netcdf(tmp_path / "nope.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(ValueError, match="bad.nc"):
        read_camels_netcdf(bad)


def test_hargreaves_swaps_inverted_days_and_counts_them():
    tmin = np.array([2.0, 10.0, 5.0])
    tmax = np.array([12.0, 4.0, 5.0 + 1e-3])
    lat, doy = np.full(3, 40.0), np.array([180.0, 180.0, 180.0])
    pet = physics.hargreaves(tmin, tmax, lat, doy)
    swapped = physics.hargreaves(np.minimum(tmin, tmax), np.maximum(tmin, tmax), lat, doy)
    np.testing.assert_allclose(pet, swapped, rtol=1e-14)
    assert np.isfinite(pet).all() and (pet >= 0).all()
    assert physics.pet.count_inverted(tmin, tmax) == 1
    with pytest.raises(ValueError, match="tmax == tmin"):
        physics.hargreaves(tmin, tmin, lat, doy)


def test_hargreaves_runs_on_real_daymet_with_inverted_days():
    ds = read_camels_netcdf(SUBSET_NC, None, ATTRS)
    assert physics.pet.count_inverted(ds["tmin"].values, ds["tmax"].values) >= 10  # 12048000 (WA): 20 days here
    pet = model_forcings(ds, "hargreaves", dtype=torch.float64)[..., 2]
    assert torch.isfinite(pet).all() and float(pet.min()) >= 0
    annual = pet[:365].sum(0)
    assert ((400 < annual) & (annual < 1600)).all(), annual  # hundreds of mm to about a metre a year


# -- training --------------------------------------------------------------------------------------------------
def _tiny_config(tmp_path, **over):
    cfg = {
        "data": {"camels_root": None, "product": "daymet",
                 "basins": ["01333000", "01411300", "03010655", "04015330", "06221400", "07057500"]},
        "periods": {"train": ["1996-10-01", "1998-09-30"], "warmup_days": 60},
        "validation": {"basin_fraction": 0.34},
        "model": {"nmul": 2, "dynamic_params": ["BETA"], "lstm_hidden": 4, "mlp_hidden": 8, "attributes": ATTRS,
                  "log_attributes": ["area_gages2"]},
        "training": {"epochs": 3, "iterations_per_epoch": 3, "batch_basins": 3, "window_days": 40, "window_warmup_days": 20,
                     "lr_schedule": "cosine", "threads": 1, "seed": 3},
        "output": {"dir": "out", "plots": False},
    }
    for k, v in over.items():
        cfg[k].update(v)
    p = tmp_path / "train.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    from bmi_dhydro import train as tr

    (tmp_path / "a").mkdir()
    cfg_a, base_a = tr.load_train_config(_tiny_config(tmp_path / "a"))
    res_a = tr.train(cfg_a, base_a, progress=False)

    (tmp_path / "b").mkdir()
    cfg_b, base_b = tr.load_train_config(_tiny_config(tmp_path / "b"))
    real = tr._learning_rate

    def interrupt(opt, it, total):  # dies at the first iteration of epoch 3
        if it == 2 * opt.iterations_per_epoch:
            raise KeyboardInterrupt
        return real(opt, it, total)

    monkeypatch.setattr(tr, "_learning_rate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tr.train(cfg_b, base_b, progress=False)
    assert not (base_b / "out" / "model.pt").exists() and (base_b / "out" / "train_state.pt").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        tr.train(cfg_b, base_b, progress=False)  # never silently restarts over an earlier run
    monkeypatch.setattr(tr, "_learning_rate", real)
    res_b = tr.train(cfg_b, base_b, progress=False, resume=True)

    wa, wb = _weights(res_a["checkpoint"]), _weights(res_b["checkpoint"])
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert [h["loss"] for h in res_a["history"]] == [h["loss"] for h in res_b["history"]]
    assert res_a["selected_epoch"] == res_b["selected_epoch"]
    # the run is recorded: CSV log, validation metrics, provenance with the split
    assert (base_b / "out" / "history.csv").read_text().count("\n") == 4
    payload = torch.load(res_b["checkpoint"], weights_only=True)
    prov = payload["provenance"]
    assert set(prov["data"]["validation_basins"]).isdisjoint(prov["data"]["train_basins"])
    assert len(prov["data"]["validation_basins"]) >= 1
    assert prov["metrics"]["validation_kind"] == "held-out basins"
    assert payload["config"]["log_attributes"] == ["area_gages2"]


def test_resume_refuses_another_config(tmp_path, monkeypatch):
    from bmi_dhydro import train as tr

    cfg, base = tr.load_train_config(_tiny_config(tmp_path, training={"epochs": 1}))
    tr.train(cfg, base, progress=False)
    cfg2, base2 = tr.load_train_config(_tiny_config(tmp_path, training={"epochs": 1, "learning_rate": 0.01}))
    with pytest.raises(ValueError, match="different config"):
        tr.train(cfg2, base2, progress=False, resume=True)


def test_best_validation_epoch_is_kept(tmp_path):
    from bmi_dhydro import train as tr

    cfg, base = tr.load_train_config(_tiny_config(tmp_path, training={"epochs": 4, "learning_rate": 0.05}))
    res = tr.train(cfg, base, progress=False)
    scores = [h["val_median_nse"] for h in res["history"]]
    assert res["selected_epoch"] == int(np.nanargmax(scores)) + 1
    assert res["metrics"]["validation_median_nse"] == pytest.approx(max(scores), abs=1e-6)


def test_split_is_seeded_and_stratified():
    from bmi_dhydro.train import split_basins

    basins = [f"{i:08d}" for i in range(40)]
    hucs = ["01"] * 20 + ["02"] * 10 + ["03"] * 10
    tr1, va1 = split_basins(basins, hucs, 0.2, 0)
    tr2, va2 = split_basins(basins, hucs, 0.2, 0)
    assert va1 == va2 and sorted(tr1 + va1) == list(range(40))
    assert sum(1 for i in va1 if hucs[i] == "01") == 4 and sum(1 for i in va1 if hucs[i] == "03") == 2
    assert split_basins(basins, hucs, 0.2, 1)[1] != va1


def test_unknown_train_config_key_is_an_error(tmp_path):
    from bmi_dhydro.train import load_train_config

    p = _tiny_config(tmp_path)
    raw = yaml.safe_load(p.read_text())
    raw["training"]["learning_rat"] = 0.1
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="learning_rat"):
        load_train_config(p)


def test_flow_duration_biases():
    from bmi_dhydro.metrics import fhv, flv

    rng = np.random.default_rng(0)
    obs = rng.gamma(0.5, 2.0, 3650)
    assert fhv(obs, obs) == 0 and flv(obs, obs) == 0
    assert fhv(2 * obs, obs) == pytest.approx(100.0)  # high flows doubled: +100 %
    # low flows pushed towards their minimum (a flatter low-flow FDC in log space): FLV > 0 as Yilmaz defines it
    low = np.quantile(obs, 0.3)
    flat = np.where(obs < low, low - 0.5 * (low - obs), obs)
    assert flv(flat, obs) > 0 and abs(fhv(flat, obs)) < 1e-9
    assert np.isnan(fhv(obs[:0], obs[:0]))


def test_evaluate_command_writes_table_csv_and_plot(tmp_path, capsys):
    from dhydro.cli import main

    rc = main(["evaluate", "--data", str(SUBSET_NC), "--start", "2001-10-01", "--end", "2003-09-30", "--out", str(tmp_path),
               "--quiet", "--forcing", "daymet"])
    assert rc == 0
    import pandas as pd

    m = pd.read_csv(tmp_path / "metrics.csv", dtype={"basin": str, "huc_02": str})
    assert list(m["basin"]) == ["02064000", "03010655", "12048000"]
    assert {"nse", "kge", "fhv", "flv", "role", "huc_02"} <= set(m.columns) and m["nse"].notna().all()
    text = (tmp_path / "summary.md").read_text()
    assert "median NSE" in text and "| 17 |" in text
    assert (tmp_path / "nse_cdf.png").stat().st_size > 5000


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_device_without_a_gpu_is_a_clear_error(tmp_path):
    from bmi_dhydro import train as tr

    cfg, base = tr.load_train_config(_tiny_config(tmp_path, training={"epochs": 1, "device": "cuda"}))
    with pytest.raises(ValueError, match="training.device: expected a CUDA GPU"):
        tr.train(cfg, base, progress=False)


# -- mixed precision ---------------------------------------------------------------------------------------------
def _lstm_model():
    from bmi_dhydro.model import DeltaModel, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(nmul=4, dynamic_params=["BETA", "BETAET"], lstm_hidden=32, mlp_hidden=16,
                      attributes=[f"a{i}" for i in range(5)])
    m = DeltaModel(cfg)
    g = torch.Generator().manual_seed(1)
    f = torch.stack([torch.rand(120, 6, generator=g) ** 4 * 40, torch.randn(120, 6, generator=g) * 10 + 8,
                     torch.rand(120, 6, generator=g) * 5], -1)
    return m, f, torch.randn(6, 5, generator=g)


def test_bfloat16_lstm_only_inside_the_block_and_close_to_float32():
    from bmi_dhydro.nn import lstm_precision

    m, f, a = _lstm_model()

    def run():
        m.zero_grad()
        st = m.warmup(m.initial_state(6), f[:60], a)
        _, out = m.unroll(st, f[60:], a, outputs=("runoff",))
        out["runoff"].sum().backward()
        return out["runoff"].detach(), {k: p.grad.clone() for k, p in m.named_parameters()}

    q32, g32 = run()
    with lstm_precision(m.provider, torch.bfloat16):
        q16, g16 = run()
    q32b, g32b = run()
    assert q16.dtype == torch.float32
    assert torch.equal(q32, q32b) and all(torch.equal(g32[k], g32b[k]) for k in g32)  # float32 again afterwards
    assert not torch.equal(q32, q16)  # the block did change the arithmetic
    rel = ((q16 - q32).abs().max() / q32.abs().max()).item()
    assert rel < 0.05, rel
    for k in ("provider.lstm.weight_hh_l0", "provider.mlp.0.weight"):
        cos = torch.nn.functional.cosine_similarity(g16[k].flatten(), g32[k].flatten(), dim=0).item()
        assert cos > 0.95, (k, cos)


def test_training_in_bfloat16_records_it_and_saves_float32(tmp_path):
    from bmi_dhydro import train as tr

    cfg, base = tr.load_train_config(_tiny_config(tmp_path, training={"epochs": 1, "precision": "bfloat16"}))
    res = tr.train(cfg, base, progress=False)
    payload = torch.load(res["checkpoint"], weights_only=True)
    assert payload["provenance"]["training"]["precision"] == "bfloat16"
    assert all(v.dtype in (torch.float32, torch.bool) for v in payload["state_dict"].values())
    with pytest.raises(ValueError, match="precision"):
        tr.load_train_config(_tiny_config(tmp_path, training={"precision": "float16"}))


def test_validation_seed_fixes_the_held_out_basins_whatever_the_training_seed(tmp_path):
    """validation.seed: runs with different training seeds are compared on the same held-out basins."""
    from bmi_dhydro import train as tr

    hucs = ["02", "02", "05", "04", "10", "11"]  # the tiny config's basins: one of the two HUC-02 basins is held out
    picks = {s: tr.split_basins(list(range(6)), hucs, 0.34, s)[1] for s in range(20)}
    a = 0
    b = next(s for s in picks if picks[s] != picks[a])  # training seeds whose own splits differ

    def held_out(name, seed, vseed):
        (tmp_path / name).mkdir()
        cfg, base = tr.load_train_config(_tiny_config(tmp_path / name, training={"epochs": 1, "iterations_per_epoch": 1,
                                                                                 "seed": seed},
                                                      validation={"seed": vseed}))
        res = tr.train(cfg, base, progress=False)
        return torch.load(res["checkpoint"], weights_only=True)["provenance"]["data"]["validation_basins"]

    own_b = held_out("b_own", b, None)
    fixed_b = held_out("b_fixed", b, a)
    own_a = held_out("a_own", a, None)
    assert own_a != own_b  # without validation.seed the split follows the training seed
    assert fixed_b == own_a  # with it, the held-out basins are those of split seed a


def test_a_basin_list_beyond_the_bundled_subset_without_data_says_to_give_data(tmp_path):
    """The 515-basin config names no data path (the data is not in the repository): without --data the error names
    the missing basin, the basin file and what to do."""
    from bmi_dhydro import train as tr

    (tmp_path / "basins.txt").write_text("# one bundled, one not\n01333000\n01350080\n")
    cfg, base = tr.load_train_config(_tiny_config(tmp_path, data={"basins": None, "basins_file": "basins.txt"}))
    with pytest.raises(FileNotFoundError, match=r"01350080.*basins.txt; data.camels_root is null.*give --data PATH"):
        tr.load_training_data(cfg, base)
