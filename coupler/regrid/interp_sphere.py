"""Bilinear and nearest-neighbour weights on the sphere, as ESMF defines them.

Bilinear (ESMF's definition)
----------------------------
ESMF builds a mesh whose **nodes are the source cell centres** (unit vectors in 3-D) and whose elements
are the quadrilaterals of four neighbouring centres ``(j, i), (j, i+1), (j+1, i+1), (j+1, i)``. A
destination point ``p`` lies in the element whose *bilinear surface in 3-D*

    B(u, v) = c00 (1-u)(1-v) + c10 u (1-v) + c11 u v + c01 (1-u) v

is met by the ray from the centre of the sphere through ``p`` (``B(u, v) = t p`` with ``t > 0`` and
``0 <= u, v <= 1``), and its weights are the four bilinear shape functions at ``(u, v)``.

How it is solved here: ``B(u, v) = t p`` says that ``B(u, v)`` has no component orthogonal to ``p``.
Projecting the four corners orthogonally onto the plane through the origin perpendicular to ``p``
(a linear map, so it commutes with the bilinear combination) leaves the planar problem
"which ``(u, v)`` maps the projected quadrilateral onto the origin", a quadratic in ``v`` solved in
closed form (the numerically stable root pair), with ``u`` from the least-squares line equation. No
iteration, no longitude arithmetic: seams and poles are ordinary points. Each solution is checked
(``t > 0``, residual, ``u, v`` in ``[0, 1]`` to 1e-10).

Pole handling ("allavg", ESMF's default for non-conservative methods on global grids): when the source
grid is periodic in its first (``i``) dimension, a pole node is added beyond each end row ``j = 0`` and
``j = ny-1``, at the normalised mean of that row's centres; the gap is closed with the triangles
``(row i, row i+1, pole)``. A destination point in such a triangle gets barycentric weights (again by the
ray through ``p`` meeting the plane triangle), and the pole's weight is spread equally over the active
centres of the row (the pole's value is their mean). So points past the last row and at the poles are
mapped.

Masks: an element (quadrilateral or pole triangle) with a masked source corner is not used, as in
ESMF; a destination point on the edge between a masked and an active element is found in the active one.

Extrapolation ``extrap_method="nearest_stod"``: active destinations that no element maps take the
value of the nearest active source centre (ESMF's ``--extrap_method nearest_stod``).

Nearest neighbours
------------------
Distances are chord lengths between unit vectors (monotonic in great-circle distance); ties go to
the lowest index, as in ESMF ("the one with the smallest id").

* ``nearest_stod``: every active destination takes the nearest active source (weight 1).
* ``nearest_dtos``: every active source goes to its nearest active destination with weight 1, so a
  destination's value is the **sum** of the sources that chose it (ESMF writes weight 1.0 for each such
  pair and does not average); destinations no source chose are unmapped.
"""
from __future__ import annotations

import numpy as np

from .crs import RegridError

__all__ = ["unit_vectors", "quad_params", "triangle_params", "bilinear_sphere", "nearest_indices",
           "grid_is_periodic", "EXTRAP_METHODS", "POLE_METHODS"]

EXTRAP_METHODS = ("none", "nearest_stod")
POLE_METHODS = ("all", "none")

#: tolerance on the parametric coordinates for "inside an element"
_IN_TOL = 1e-10


def unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.deg2rad(np.asarray(lon, dtype=np.float64)), np.deg2rad(np.asarray(lat, dtype=np.float64))
    c = np.cos(la)
    return np.stack([c * np.cos(lo), c * np.sin(lo), np.sin(la)], axis=-1)


def _perp_basis(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal vectors ``e1, e2`` spanning the plane perpendicular to each row of ``p`` (n, 3)."""
    n = p.shape[0]
    a = np.zeros_like(p)
    a[np.arange(n), np.argmin(np.abs(p), axis=1)] = 1.0
    e1 = np.cross(a, p)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(p, e1)
    e2 /= np.linalg.norm(e2, axis=1, keepdims=True)
    return e1, e2


def _project(corners: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Components of ``corners - p`` (n, k, 3) in the plane perpendicular to ``p`` (n, 3): two (n, k) arrays."""
    e1, e2 = _perp_basis(p)
    d = corners - p[:, None, :]
    return np.einsum("nkc,nc->nk", d, e1), np.einsum("nkc,nc->nk", d, e2)


def _cross2(ax, ay, bx, by):
    return ax * by - ay * bx


def quad_params(corners: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parametric coordinates ``(u, v)`` where the ray through ``p`` meets the bilinear quadrilaterals.

    ``corners`` (n, 4, 3) in the order (0,0), (1,0), (1,1), (0,1) of ``(u, v)``; ``p`` (n, 3) unit vectors.
    Returns ``u, v`` and a flag ``ok`` (a solution with ``u, v`` in ``[0, 1]`` within 1e-10, ``t > 0``).
    """
    X, Y = _project(corners, p)
    q0x, q0y = X[:, 0], Y[:, 0]
    ax, ay = X[:, 1] - X[:, 0], Y[:, 1] - Y[:, 0]
    bx, by = X[:, 3] - X[:, 0], Y[:, 3] - Y[:, 0]
    cx, cy = X[:, 0] - X[:, 1] + X[:, 2] - X[:, 3], Y[:, 0] - Y[:, 1] + Y[:, 2] - Y[:, 3]
    # (Q0 + v B) x (A + v C) = 0
    qa = _cross2(bx, by, cx, cy)
    qb = _cross2(q0x, q0y, cx, cy) + _cross2(bx, by, ax, ay)
    qc = _cross2(q0x, q0y, ax, ay)
    scale = np.maximum(np.abs(X).max(axis=1) + np.abs(Y).max(axis=1), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        disc = qb * qb - 4.0 * qa * qc
        sq = np.sqrt(np.maximum(disc, 0.0))
        q = -0.5 * (qb + np.where(qb >= 0, sq, -sq))
        roots = (q / qa, qc / q)
        best_u = np.full(p.shape[0], np.nan)
        best_v = np.full(p.shape[0], np.nan)
        found = np.zeros(p.shape[0], dtype=bool)
        for v in roots:
            dx, dy = ax + v * cx, ay + v * cy
            ex, ey = q0x + v * bx, q0y + v * by
            dd = dx * dx + dy * dy
            degenerate = dd <= (1e-24 * scale * scale)  # a collapsed edge (e.g. two corners at a pole)
            u = np.where(degenerate, 0.5, -(ex * dx + ey * dy) / np.where(degenerate, 1.0, dd))
            rx = q0x + u * ax + v * bx + u * v * cx
            ry = q0y + u * ay + v * by + u * v * cy
            resid = np.hypot(rx, ry) / scale
            good = (np.isfinite(u) & np.isfinite(v) & (resid < 1e-8) & (u >= -_IN_TOL) & (u <= 1 + _IN_TOL)
                    & (v >= -_IN_TOL) & (v <= 1 + _IN_TOL) & ~found)
            best_u = np.where(good, u, best_u)
            best_v = np.where(good, v, best_v)
            found |= good
    u = np.clip(np.nan_to_num(best_u), 0.0, 1.0)
    v = np.clip(np.nan_to_num(best_v), 0.0, 1.0)
    # the intersection must be on p's side of the centre of the sphere (ESMF: "t > 0")
    w = np.stack([(1 - u) * (1 - v), u * (1 - v), u * v, (1 - u) * v], axis=1)
    t = np.einsum("nkc,nk,nc->n", corners, w, p)
    return u, v, found & (t > 0)


def triangle_params(corners: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Barycentric ``(u, v)`` (weights ``1-u-v, u, v``) where the ray through ``p`` meets plane triangles (n, 3, 3)."""
    X, Y = _project(corners, p)
    ax, ay = X[:, 1] - X[:, 0], Y[:, 1] - Y[:, 0]
    bx, by = X[:, 2] - X[:, 0], Y[:, 2] - Y[:, 0]
    det = _cross2(ax, ay, bx, by)
    scale = np.maximum(np.abs(X).max(axis=1) + np.abs(Y).max(axis=1), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = _cross2(-X[:, 0], -Y[:, 0], bx, by) / det
        v = _cross2(ax, ay, -X[:, 0], -Y[:, 0]) / det
    ok = (np.abs(det) > 1e-24 * scale * scale) & np.isfinite(u) & np.isfinite(v) & (u >= -_IN_TOL) \
        & (v >= -_IN_TOL) & (u + v <= 1 + _IN_TOL)
    u = np.clip(np.nan_to_num(u), 0.0, 1.0)
    v = np.clip(np.nan_to_num(v), 0.0, 1.0)
    s = u + v
    over = s > 1
    u = np.where(over, u / np.where(over, s, 1), u)
    v = np.where(over, v / np.where(over, s, 1), v)
    w = np.stack([1 - u - v, u, v], axis=1)
    t = np.einsum("nkc,nk,nc->n", corners, w, p)
    return u, v, ok & (t > 0)


def grid_is_periodic(nodes: np.ndarray, rectilinear_width: float | None = None) -> bool:
    """Whether a structured grid of centre unit vectors (ny, nx, 3) closes around the sphere along ``i``.

    Rectilinear longitude/latitude grids are periodic when their cell bounds span 360 degrees
    (``rectilinear_width``); other grids when, in every row, the gap from the last centre back to the
    first is no longer than 1.5 times the largest step between neighbouring centres of that row.
    """
    if nodes.shape[1] < 3:
        return False
    if rectilinear_width is not None:
        return abs(rectilinear_width - 360.0) < 1e-6 * 360.0
    step = np.linalg.norm(np.diff(nodes, axis=1), axis=2).max(axis=1)
    gap = np.linalg.norm(nodes[:, 0] - nodes[:, -1], axis=1)
    return bool(np.all(gap <= 1.5 * step) and np.all(step < 1.0))


def nearest_indices(tree_points: np.ndarray, query: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """Index of the nearest of ``tree_points`` (m, 3) for each row of ``query`` (n, 3); ties -> lowest index."""
    from scipy.spatial import cKDTree

    tree = cKDTree(tree_points)
    k = min(4, tree_points.shape[0])
    out = np.empty(query.shape[0], dtype=np.int64)
    for s in range(0, query.shape[0], chunk):
        d, i = tree.query(query[s:s + chunk], k=k)
        d, i = d.reshape(-1, k), i.reshape(-1, k)
        # equally near candidates (to rounding of the chord) -> the smallest index
        tie = d <= d[:, :1] * (1 + 1e-14) + 1e-300
        out[s:s + chunk] = np.where(tie, i, np.iinfo(np.int64).max).min(axis=1)
    return out


def _quad_candidates(jn: np.ndarray, in_: np.ndarray, ny: int, nx: int, periodic: bool) -> tuple[np.ndarray, ...]:
    """The (up to 4) quadrilaterals (lower-left node j, i) around each node (jn, in_): arrays (n, 4 * k)."""
    dj = np.array([-1, -1, 0, 0])
    di = np.array([-1, 0, -1, 0])
    cj = (jn[..., None] + dj).reshape(jn.shape[0], -1)
    ci = (in_[..., None] + di).reshape(jn.shape[0], -1)
    imax = nx - 1 if periodic else nx - 2
    if periodic:
        ci = ci % nx
    valid = (cj >= 0) & (cj <= ny - 2) & (ci >= 0) & (ci <= imax)
    return np.clip(cj, 0, ny - 2), np.clip(ci, 0, max(imax, 0)), valid


def bilinear_sphere(nodes: np.ndarray, active: np.ndarray, points: np.ndarray, *, periodic: bool,
                    pole_method: str = "all", chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ESMF bilinear weights from a structured grid of centre unit vectors to points (see the module docstring).

    ``nodes`` (ny, nx, 3), ``active`` (ny, nx) bool, ``points`` (n, 3). Returns ``cols`` (n, 4) source indices
    (flattened ``j * nx + i``), ``w`` (n, 4) weights, ``ok`` (n,) mapped flags and ``None`` or, when pole
    triangles were used, ``(rows, cols, w)`` of the pole weights spread over the active end row (add them).
    """
    from scipy.spatial import cKDTree

    if pole_method not in POLE_METHODS:
        raise RegridError(f"pole_method must be one of {POLE_METHODS}, got {pole_method!r}")
    ny, nx, _ = nodes.shape
    if ny < 2 or nx < 2:
        raise RegridError(f"bilinear needs at least 2 x 2 source cells, the source grid is {ny} x {nx}")
    flat = nodes.reshape(-1, 3)
    act = active.reshape(-1)
    n = points.shape[0]
    cols = np.zeros((n, 4), dtype=np.int64)
    w = np.zeros((n, 4))
    ok = np.zeros(n, dtype=bool)
    tree = cKDTree(flat)
    quad_ok = np.zeros((ny - 1, nx), dtype=bool)  # lower-left node (j, i); i = nx-1 only when periodic
    i1 = (np.arange(nx) + 1) % nx
    quad_ok[:, :] = act.reshape(ny, nx)[:-1, :] & act.reshape(ny, nx)[:-1, i1] & act.reshape(ny, nx)[1:, i1] \
        & act.reshape(ny, nx)[1:, :]
    if not periodic:
        quad_ok[:, -1] = False

    # a point inside a quad is within the quad's longest diagonal of its nearest centre: farther points are
    # outside every quad and skip the wider search
    g2 = nodes.reshape(ny, nx, 3)
    diag = max(float(np.linalg.norm(g2[1:, i1] - g2[:-1], axis=2)[quad_ok].max(initial=0.0)),
               float(np.linalg.norm(g2[1:] - g2[:-1, i1], axis=2)[quad_ok].max(initial=0.0)))
    nearest_d = np.full(n, np.inf)

    def try_quads(idx: np.ndarray, k: int) -> None:
        step = max(1000, chunk * 4 // k)
        for s in range(0, idx.size, step):
            sel = idx[s:s + step]
            dist, near = tree.query(points[sel], k=min(k, flat.shape[0]))
            nearest_d[sel] = dist.reshape(sel.size, -1)[:, 0]
            near = near.reshape(sel.size, -1)
            jn, in_ = np.divmod(near, nx)
            cj, ci, valid = _quad_candidates(jn, in_, ny, nx, periodic)
            valid &= quad_ok[cj, ci]
            m = cj.shape[1]
            rr = np.repeat(np.arange(sel.size), m)
            cjf, cif = cj.reshape(-1), ci.reshape(-1)
            cif1 = (cif + 1) % nx
            idxq = np.stack([cjf * nx + cif, cjf * nx + cif1, (cjf + 1) * nx + cif1, (cjf + 1) * nx + cif], axis=1)
            vf = valid.reshape(-1)
            u = np.zeros(rr.size)
            v = np.zeros(rr.size)
            good = np.zeros(rr.size, dtype=bool)
            if vf.any():
                u[vf], v[vf], good[vf] = quad_params(flat[idxq[vf]], points[sel][rr[vf]])
            good = good.reshape(sel.size, m)
            hit = good.any(axis=1)
            first = np.argmax(good, axis=1)
            pick = np.arange(sel.size) * m + first
            uu, vv = u[pick], v[pick]
            g = sel[hit]
            cols[g] = idxq[pick][hit]
            w[g] = np.stack([(1 - uu) * (1 - vv), uu * (1 - vv), uu * vv, (1 - uu) * vv], axis=1)[hit]
            ok[g] = True

    try_quads(np.arange(n), 4)
    left = np.nonzero(~ok & (nearest_d <= diag * (1 + 1e-9)))[0]
    if left.size:
        try_quads(left, 16)  # anisotropic cells (e.g. next to a pole): the containing quad's corners further away
    extra_cols: list[np.ndarray] = []
    extra_w: list[np.ndarray] = []
    extra_rows: list[np.ndarray] = []
    left = np.nonzero(~ok)[0]
    if left.size and periodic and pole_method == "all":
        for row in (0, ny - 1):
            ring = nodes[row]
            ring_act = active[row]
            centre = ring.sum(axis=0)
            norm = np.linalg.norm(centre)
            if norm < 1e-12 * nx or not ring_act.any():
                continue
            pole = centre / norm
            tri_ok = ring_act & ring_act[i1]
            pole_cols = row * nx + np.nonzero(ring_act)[0]
            share = 1.0 / pole_cols.size
            rtree = cKDTree(ring)
            for s in range(0, left.size, chunk):
                sel = left[s:s + chunk]
                sel = sel[~ok[sel]]
                if sel.size == 0:
                    continue
                _, near = rtree.query(points[sel], k=min(4, nx))
                near = near.reshape(sel.size, -1)
                cand = np.concatenate([(near - 1) % nx, near], axis=1)
                found_u = np.zeros(sel.size)
                found_v = np.zeros(sel.size)
                found_i = np.zeros(sel.size, dtype=np.int64)
                found = np.zeros(sel.size, dtype=bool)
                for c in range(cand.shape[1]):
                    ii = cand[:, c]
                    tri = np.stack([ring[ii], ring[i1[ii]], np.broadcast_to(pole, (sel.size, 3))], axis=1)
                    u, v, good = triangle_params(tri, points[sel])
                    good &= tri_ok[ii] & ~found
                    found_u[good], found_v[good], found_i[good] = u[good], v[good], ii[good]
                    found |= good
                g = sel[found]
                if g.size:
                    ii, u, v = found_i[found], found_u[found], found_v[found]
                    cols[g] = np.stack([row * nx + ii, row * nx + i1[ii], row * nx + ii, row * nx + ii], axis=1)
                    w[g] = np.stack([1 - u - v, u, np.zeros_like(u), np.zeros_like(u)], axis=1)
                    extra_rows.append(np.repeat(g, pole_cols.size))
                    extra_cols.append(np.tile(pole_cols, g.size))
                    extra_w.append(np.repeat(v * share, pole_cols.size))
                    ok[g] = True
    if extra_rows:
        return cols, w, ok, (np.concatenate(extra_rows), np.concatenate(extra_cols), np.concatenate(extra_w))
    return cols, w, ok, None
