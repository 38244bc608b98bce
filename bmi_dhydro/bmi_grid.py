"""The BMI grid of :class:`~bmi_dhydro.bmi.BmiDeltaModel`: one unstructured grid (id 0) of N points, the units.

A mixin: the class using it has ``n`` (the number of units) and ``units`` (with ``lon`` and ``lat``).
"""

from __future__ import annotations

import numpy as np


class UnitPointsGrid:
    """Grid 0: the units as unconnected points (x = longitude, y = latitude; no edges or faces)."""

    def _grid(self, grid: int) -> None:
        if grid != 0:
            raise ValueError(f"grid {grid}: unknown grid id; this component has one grid, 0")

    def get_grid_rank(self, grid: int) -> int:
        self._grid(grid)
        return 2

    def get_grid_size(self, grid: int) -> int:
        self._grid(grid)
        return int(self.n)

    def get_grid_type(self, grid: int) -> str:
        self._grid(grid)
        return "unstructured"

    def get_grid_x(self, grid: int, x: np.ndarray) -> np.ndarray:
        self._grid(grid)
        x[:] = self.units.lon
        return x

    def get_grid_y(self, grid: int, y: np.ndarray) -> np.ndarray:
        self._grid(grid)
        y[:] = self.units.lat
        return y

    def get_grid_z(self, grid: int, z: np.ndarray) -> np.ndarray:
        self._grid(grid)
        raise ValueError("get_grid_z: grid 0 has rank 2 (lon, lat); it has no z coordinate")

    def get_grid_node_count(self, grid: int) -> int:
        self._grid(grid)
        return int(self.n)

    def get_grid_edge_count(self, grid: int) -> int:
        self._grid(grid)
        return 0

    def get_grid_face_count(self, grid: int) -> int:
        self._grid(grid)
        return 0

    def get_grid_edge_nodes(self, grid: int, edge_nodes: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return edge_nodes  # no edges: the units are unconnected points

    def get_grid_face_edges(self, grid: int, face_edges: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return face_edges

    def get_grid_face_nodes(self, grid: int, face_nodes: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return face_nodes

    def get_grid_nodes_per_face(self, grid: int, nodes_per_face: np.ndarray) -> np.ndarray:
        self._grid(grid)
        return nodes_per_face

    def get_grid_shape(self, grid: int, shape: np.ndarray) -> np.ndarray:
        self._grid(grid)
        raise ValueError("get_grid_shape: grid 0 is unstructured; use get_grid_node_count")

    def get_grid_spacing(self, grid: int, spacing: np.ndarray) -> np.ndarray:
        self._grid(grid)
        raise ValueError("get_grid_spacing: grid 0 is unstructured and has no uniform spacing")

    def get_grid_origin(self, grid: int, origin: np.ndarray) -> np.ndarray:
        self._grid(grid)
        raise ValueError("get_grid_origin: grid 0 is unstructured and has no origin")
