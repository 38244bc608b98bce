"""Quick-look plots of a coupled run's output file (``outputs.plots: true``)."""

from __future__ import annotations

from pathlib import Path

from bmi_dhydro._extras import optional_pyplot
from bmi_dhydro.cf import select
from bmi_dhydro.safe_io import save_figure


def plot_outputs(nc_path, variables) -> list[Path]:
    """PNGs of the first three output variables next to ``nc_path``; none (and one warning) without matplotlib
    (the 'plot' extra): the plots are a side product, the run does not fail for them."""
    plt = optional_pyplot("the quick-look plots of a coupled run (outputs.plots)")
    if plt is None:
        return []
    import xarray as xr

    pngs = []
    with xr.open_dataset(nc_path) as ds:
        for v in variables[:3]:
            fig, ax = plt.subplots(figsize=(10, 3.8))
            data = select(ds, v)
            for i in range(min(ds.sizes["unit_id"], 12)):
                ax.plot(ds["time"].values, data[:, i].values, lw=0.9, label=str(ds["unit_id"].values[i]))
            ax.set_ylabel(f"{v}\n({data.attrs.get('units', '')})", fontsize=8)
            ax.set_title(f"{Path(nc_path).name}: {v}")
            if ds.sizes["unit_id"] <= 12:
                ax.legend(fontsize=6, ncol=4)
            fig.tight_layout()
            p = Path(nc_path).with_name(Path(nc_path).stem + f"_{v.split('__')[-1]}.png")
            save_figure(fig, p, dpi=100)
            plt.close(fig)
            pngs.append(p)
    return pngs
