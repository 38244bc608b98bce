"""A small pure-numpy BMI model for testing the shim's generic paths.

The real model (bmi_dhydro.BmiDeltaModel) only has float64 variables on one unstructured grid of
points. This stand-in adds what the shim must also carry: int32, int64 and float32 variables, a
size-1 variable, a 2x3 uniform rectilinear grid, an unstructured grid with edges and faces, and a
switch that makes update() raise, so every typed Fortran/C path can be checked against values
computed here in Python.

Config (YAML-free: ``key = value`` lines, so the stand-in needs nothing but numpy)::

    n_units = 3
    time_step = 3600
    fail_at_step = -1     # update() raises on this step (0-based); -1 never
    import_torch = 0      # 1: import torch in initialize (checks extension modules load)
"""
from __future__ import annotations

import os

import numpy as np

STORAGE = "standin__water_storage"
PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"
TEMP = "land_surface_air__temperature"
RUNOFF = "land_surface_water__runoff_depth"
COUNT_I32 = "standin__step_count"
LABEL_I64 = "standin__unit_label"
RATIO_F32 = "standin__ratio"
TOTAL = "standin__total_runoff"  # size 1
FIELD = "standin__field"  # on the 2x3 uniform rectilinear grid

GRID_UNITS, GRID_RECT, GRID_MESH = 0, 1, 2


def read_config(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"stand-in config not found: {path}")
    cfg = {"n_units": 3, "time_step": 3600.0, "fail_at_step": -1, "import_torch": 0}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, sep, value = (s.strip() for s in line.partition("="))
            if not sep or key not in cfg:
                raise ValueError(f"{path}:{lineno}: expected one of {sorted(cfg)} = value, got {line!r}")
            cfg[key] = type(cfg[key])(float(value)) if key != "time_step" else float(value)
    return cfg


class StandInBmi:
    """Linear reservoir per unit: S += P*dt*k_in; Q = 0.1*S; S -= Q (all float64)."""

    def __init__(self):
        self._t = 0.0
        self._step = 0
        self._values: dict[str, np.ndarray] = {}

    # lifecycle
    def initialize(self, config_file: str) -> None:
        cfg = read_config(config_file)
        if cfg["import_torch"]:
            import torch  # noqa: F401  (proves big extension modules import in the host)
        n = int(cfg["n_units"])
        self.n = n
        self.dt = float(cfg["time_step"])
        self.fail_at = int(cfg["fail_at_step"])
        self._values = {
            PRECIP: np.zeros(n),
            TEMP: np.full(n, 283.15),
            STORAGE: np.linspace(1.0, 2.0, n),
            RUNOFF: np.zeros(n),
            COUNT_I32: np.zeros(n, dtype=np.int32),
            LABEL_I64: (np.arange(n, dtype=np.int64) + 1) * 1_000_000_007,
            RATIO_F32: np.linspace(0.25, 0.75, n).astype(np.float32),
            TOTAL: np.zeros(1),
            FIELD: np.arange(6, dtype=np.float64) * 1.5,
        }
        self._t = 0.0
        self._step = 0

    def update(self) -> None:
        if self._step == self.fail_at:
            raise RuntimeError(f"stand-in: deliberate failure at step {self._step}")
        v = self._values
        melt = np.clip(v[TEMP] - 273.15, 0.0, None) * 1e-4
        v[STORAGE][:] += v[PRECIP] * self.dt * 1e-3 + melt
        q = 0.1 * v[STORAGE]
        v[STORAGE][:] -= q
        v[RUNOFF][:] = q
        v[COUNT_I32][:] += 1
        v[TOTAL][0] = v[RUNOFF].sum()
        self._t += self.dt
        self._step += 1

    def update_until(self, time: float) -> None:
        while self._t < time - 1e-9:
            self.update()

    def finalize(self) -> None:
        self._values = {}

    # information
    def get_component_name(self) -> str:
        return "shim stand-in reservoir"

    def get_input_item_count(self) -> int:
        return len(self.get_input_var_names())

    def get_output_item_count(self) -> int:
        return len(self.get_output_var_names())

    def get_input_var_names(self):
        return (PRECIP, TEMP, RATIO_F32, LABEL_I64, COUNT_I32)

    def get_output_var_names(self):
        return (RUNOFF, STORAGE, TOTAL, FIELD)

    def _check(self, name: str) -> np.ndarray:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"stand-in has no variable {name!r}") from None

    def get_var_type(self, name: str) -> str:
        return str(self._check(name).dtype)

    def get_var_units(self, name: str) -> str:
        self._check(name)
        return {PRECIP: "mm s-1", TEMP: "K", RUNOFF: "m", STORAGE: "m"}.get(name, "1")

    def get_var_itemsize(self, name: str) -> int:
        return int(self._check(name).itemsize)

    def get_var_nbytes(self, name: str) -> int:
        return int(self._check(name).nbytes)

    def get_var_location(self, name: str) -> str:
        self._check(name)
        return "face" if name == FIELD else "node"

    def get_var_grid(self, name: str) -> int:
        self._check(name)
        if name == FIELD:
            return GRID_RECT
        if name == TOTAL:
            return GRID_MESH
        return GRID_UNITS

    # time
    def get_current_time(self) -> float:
        return self._t

    def get_start_time(self) -> float:
        return 0.0

    def get_end_time(self) -> float:
        return 1.0e9

    def get_time_units(self) -> str:
        return "s"

    def get_time_step(self) -> float:
        return self.dt

    # values
    def get_value_ptr(self, name: str) -> np.ndarray:
        return self._check(name)

    def get_value(self, name: str, dest: np.ndarray) -> np.ndarray:
        dest[:] = self._check(name).reshape(-1)
        return dest

    def get_value_at_indices(self, name: str, dest: np.ndarray, inds: np.ndarray) -> np.ndarray:
        dest[:] = self._check(name).reshape(-1)[inds]
        return dest

    def set_value(self, name: str, src: np.ndarray) -> None:
        self._check(name)[:] = src

    def set_value_at_indices(self, name: str, inds: np.ndarray, src: np.ndarray) -> None:
        self._check(name)[inds] = src

    # grids: 0 = the units (points), 1 = 2x3 uniform rectilinear, 2 = 2 triangles sharing an edge
    def get_grid_type(self, grid: int) -> str:
        return {GRID_UNITS: "points", GRID_RECT: "uniform_rectilinear", GRID_MESH: "unstructured"}[grid]

    def get_grid_rank(self, grid: int) -> int:
        return {GRID_UNITS: 1, GRID_RECT: 2, GRID_MESH: 2}[grid]

    def get_grid_size(self, grid: int) -> int:
        return {GRID_UNITS: self.n, GRID_RECT: 6, GRID_MESH: 4}[grid]

    def get_grid_shape(self, grid: int, shape: np.ndarray) -> np.ndarray:
        if grid != GRID_RECT:
            raise ValueError(f"grid {grid} has no shape")
        shape[:] = (2, 3)
        return shape

    def get_grid_spacing(self, grid: int, spacing: np.ndarray) -> np.ndarray:
        if grid != GRID_RECT:
            raise ValueError(f"grid {grid} has no spacing")
        spacing[:] = (2.5, 0.5)
        return spacing

    def get_grid_origin(self, grid: int, origin: np.ndarray) -> np.ndarray:
        if grid != GRID_RECT:
            raise ValueError(f"grid {grid} has no origin")
        origin[:] = (-10.0, 40.0)
        return origin

    def get_grid_x(self, grid: int, x: np.ndarray) -> np.ndarray:
        x[:] = {GRID_UNITS: np.arange(self.n) * 1.0 - 70.0, GRID_RECT: [40.0, 40.5, 41.0],
                GRID_MESH: [0.0, 1.0, 0.0, 1.0]}[grid]
        return x

    def get_grid_y(self, grid: int, y: np.ndarray) -> np.ndarray:
        y[:] = {GRID_UNITS: np.arange(self.n) * 0.5 + 40.0, GRID_RECT: [-10.0, -7.5],
                GRID_MESH: [0.0, 0.0, 1.0, 1.0]}[grid]
        return y

    def get_grid_z(self, grid: int, z: np.ndarray) -> np.ndarray:
        raise ValueError(f"grid {grid} has no z coordinate")

    def get_grid_node_count(self, grid: int) -> int:
        return {GRID_UNITS: self.n, GRID_RECT: 6, GRID_MESH: 4}[grid]

    def get_grid_edge_count(self, grid: int) -> int:
        return 5 if grid == GRID_MESH else 0

    def get_grid_face_count(self, grid: int) -> int:
        return 2 if grid == GRID_MESH else 0

    def get_grid_edge_nodes(self, grid: int, edge_nodes: np.ndarray) -> np.ndarray:
        edge_nodes[:] = [0, 1, 1, 3, 3, 2, 2, 0, 1, 2]
        return edge_nodes

    def get_grid_face_edges(self, grid: int, face_edges: np.ndarray) -> np.ndarray:
        face_edges[:] = [0, 4, 3, 1, 2, 4]
        return face_edges

    def get_grid_face_nodes(self, grid: int, face_nodes: np.ndarray) -> np.ndarray:
        face_nodes[:] = [0, 1, 2, 1, 3, 2]
        return face_nodes

    def get_grid_nodes_per_face(self, grid: int, nodes_per_face: np.ndarray) -> np.ndarray:
        nodes_per_face[:] = [3, 3]
        return nodes_per_face
