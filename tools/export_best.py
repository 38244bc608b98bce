"""Write the best-so-far model of an unfinished training run (its train_state.pt) as a checkpoint.

    python tools/export_best.py runs/camels515 OUT.pt

For a run that was cut off: the selected weights are those of the best validation epoch so far; the provenance
says the run is unfinished and after which epoch.  A finished run's model.pt is the same thing for all epochs.
"""

import json
import sys
from pathlib import Path

import torch

from bmi_dhydro.checkpoint import save_checkpoint
from bmi_dhydro.datasets import ATTRIBUTE_UNITS
from bmi_dhydro.model import DeltaModel, ModelConfig


def main(run_dir, out):
    st = torch.load(Path(run_dir) / "train_state.pt", map_location="cpu", weights_only=True)
    cfg = json.loads(st["config"])
    m = cfg["model"]
    mcfg = ModelConfig(variant=m["variant"], nmul=m["nmul"], dynamic_params=m["dynamic_params"], routing=m["routing"],
                       lstm_hidden=m["lstm_hidden"], mlp_hidden=m["mlp_hidden"], mlp_layers=m["mlp_layers"],
                       attributes=m["attributes"], attribute_units=[ATTRIBUTE_UNITS.get(a, "") for a in m["attributes"]],
                       log_attributes=m["log_attributes"], pet_method=m["pet_method"])
    model = DeltaModel(mcfg)
    model.load_state_dict(st["best_state"] or st["model"])
    prov = {"unfinished_run": True, "epochs_done": st["epoch"], "selected_epoch": st["best_epoch"],
            "validation_median_nse": st["best_score"], "train_config": cfg, "history": json.loads(st["history"]),
            "data": {"product": cfg["data"]["product"], "train_basins": st.get("train_basins", []),
                     "validation_basins": st.get("validation_basins", [])}}
    print(f"wrote {save_checkpoint(model, out, prov)} (epoch {st['best_epoch']} of {st['epoch']} done)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
