"""UGRID 1.0 meshes (2-D face meshes) as regridding cells: coupler.regrid.grids._read_ugrid.

The files are written here with netCDF4 following the UGRID conventions (ugrid-conventions.github.io,
v1.0): a ``cf_role = "mesh_topology"`` variable with ``topology_dimension = 2``, ``node_coordinates``,
``face_node_connectivity`` (``start_index`` 0 or 1, rows padded with ``_FillValue`` for mixed faces)
and optionally ``face_coordinates``.
"""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import shapely

netCDF4 = pytest.importorskip("netCDF4")

from regrid_sphere_cases import lonlat_grid  # noqa: E402

from coupler.regrid import Grid, Polygons, RegridError, generate_weights  # noqa: E402
from coupler.regrid.cdo import cdo_available, read_scrip_weights, write_cdo_cells  # noqa: E402
from coupler.regrid.grids import read_cells, read_grid, write_esmf_mesh  # noqa: E402
from coupler.regrid.sphere import lonlat_to_xyz  # noqa: E402

FOUR_PI = 4.0 * np.pi


# ----------------------------------------------------------------------------------------------
# writing UGRID files
# ----------------------------------------------------------------------------------------------
def write_ugrid(path, nodes, faces, *, start_index=0, fill=-999, face_xy=None, mesh="mesh2d",
                topology_dimension=2, node_names=None, node_attrs=None, transpose=False, extra=None,
                face_ids=None):
    """A UGRID file with one mesh ``mesh``: ``nodes`` (n, 2) and ``faces`` (lists of 0-based node numbers)."""
    nodes = np.asarray(nodes, dtype=np.float64)
    nmax = max(len(f) for f in faces)
    conn = np.full((len(faces), nmax), fill, dtype=np.int32)
    for k, f in enumerate(faces):
        conn[k, :len(f)] = np.asarray(f) + start_index
    xn, yn = node_names or (f"{mesh}_node_x", f"{mesh}_node_y")
    attrs = node_attrs or ({"standard_name": "longitude", "units": "degrees_east"},
                           {"standard_name": "latitude", "units": "degrees_north"})
    with netCDF4.Dataset(str(path), "w") as nc:
        nc.Conventions = "CF-1.8 UGRID-1.0"
        nc.createDimension(f"{mesh}_nNodes", nodes.shape[0])
        nc.createDimension(f"{mesh}_nFaces", len(faces))
        nc.createDimension(f"{mesh}_nMax_face_nodes", nmax)
        t = nc.createVariable(mesh, "i4")
        t.cf_role = "mesh_topology"
        t.topology_dimension = np.int32(topology_dimension)
        t.node_coordinates = f"{xn} {yn}"
        t.face_node_connectivity = f"{mesh}_face_nodes"
        t.face_dimension = f"{mesh}_nFaces"
        for name, data, a in ((xn, nodes[:, 0], attrs[0]), (yn, nodes[:, 1], attrs[1])):
            v = nc.createVariable(name, "f8", (f"{mesh}_nNodes",))
            for key, val in a.items():
                v.setncattr(key, val)
            v[:] = data
        dims = (f"{mesh}_nFaces", f"{mesh}_nMax_face_nodes")
        v = nc.createVariable(f"{mesh}_face_nodes", "i4", dims[::-1] if transpose else dims, fill_value=fill)
        v.cf_role = "face_node_connectivity"
        v.start_index = np.int32(start_index)
        v[:] = conn.T if transpose else conn
        if face_xy is not None:
            t.face_coordinates = f"{mesh}_face_x {mesh}_face_y"
            for name, data, sn, u in ((f"{mesh}_face_x", face_xy[0], "longitude", "degrees_east"),
                                      (f"{mesh}_face_y", face_xy[1], "latitude", "degrees_north")):
                v = nc.createVariable(name, "f8", (f"{mesh}_nFaces",))
                v.standard_name, v.units = sn, u
                v[:] = data
        if face_ids is not None:
            v = nc.createVariable(f"{mesh}_face_id", "i8", (f"{mesh}_nFaces",))
            v[:] = face_ids
        v = nc.createVariable("data", "f8", (f"{mesh}_nFaces",))
        v.mesh, v.location = mesh, "face"
        v[:] = np.arange(len(faces), dtype=float)
        if extra is not None:
            extra(nc)
    return path


def box_mesh(lon_edges, lat_edges):
    """Nodes of a lon/lat box grid and its cells as counter-clockwise 0-based quads, C order (j, i)."""
    nx, ny = len(lon_edges) - 1, len(lat_edges) - 1
    LON, LAT = np.meshgrid(lon_edges, lat_edges)
    nodes = np.column_stack([LON.ravel(), LAT.ravel()])

    def n(j, i):
        return j * (nx + 1) + i

    quads = [[n(j, i), n(j, i + 1), n(j + 1, i + 1), n(j + 1, i)] for j in range(ny) for i in range(nx)]
    return nodes, quads


def mixed_mesh(lon_edges, lat_edges):
    """The box cells, those with i + j odd split into two triangles, the top-right one a pentagon."""
    nodes, quads = box_mesh(lon_edges, lat_edges)
    nx = len(lon_edges) - 1
    faces = []
    for k, q in enumerate(quads):
        j, i = divmod(k, nx)
        if (i + j) % 2 == 1:
            faces += [[q[0], q[1], q[2]], [q[0], q[2], q[3]]]
        else:
            faces.append(list(q))
    # a 5th node above the middle of the top-right cell's top edge (the mesh boundary)
    top = np.array([[0.5 * (lon_edges[-2] + lon_edges[-1]), lat_edges[-1] + 0.4]])
    nodes = np.vstack([nodes, top])
    last = faces[-1]
    assert len(last) == 4  # i + j even for the top-right cell of the meshes used here
    faces[-1] = [last[0], last[1], last[2], nodes.shape[0] - 1, last[3]]
    return nodes, faces


def polygons_of(nodes, faces, centers=None):
    return Polygons(np.array([shapely.Polygon(nodes[f]) for f in faces], dtype=object), "EPSG:4326",
                    centers=centers)


def girard_areas(nodes, faces):
    """Spherical areas (sr) of convex great-circle polygons: sum of interior angles - (n - 2) pi."""
    out = []
    for f in faces:
        p = lonlat_to_xyz(nodes[f, 0], nodes[f, 1])
        n = len(f)
        ang = 0.0
        for k in range(n):
            a, b, c = p[k - 1], p[k], p[(k + 1) % n]
            t1, t2 = a - (a @ b) * b, c - (c @ b) * b
            ang += np.arctan2(np.linalg.norm(np.cross(t1, t2)), t1 @ t2)
        out.append(ang - (n - 2) * np.pi)
    return np.array(out)


def max_rel_diff(w1, w2):
    return abs(w1.matrix - w2.matrix).max() / abs(w2.matrix).max()


REGION_LON = np.arange(0.0, 8.0 + 1e-9, 2.0)     # 4 columns of 2 degrees
REGION_LAT = np.arange(40.0, 46.0 + 1e-9, 1.5)   # 4 rows of 1.5 degrees


def region_source():
    return lonlat_grid(0.7, 0.6, lon_range=(-1.0, 10.1), lat_range=(38.0, 48.2))


def weights(src, dst, **kw):
    return generate_weights(src, dst, progress=False, **kw)


def check_conserved(w, f_src):
    """dstarea weights: sum_b d_b area_b == sum_a f_a frac_a area_a (the source integral that was mapped)."""
    d = w.matrix @ f_src
    lhs = float(np.sum(d * w.area_b))
    rhs = float(np.sum(f_src * w.frac_a * w.area_a))
    assert abs(lhs - rhs) <= 1e-12 * abs(rhs), (lhs, rhs)


# ----------------------------------------------------------------------------------------------
# (a) quads: the UGRID mesh equal to a small lon/lat grid
# ----------------------------------------------------------------------------------------------
def test_quad_mesh_equals_lonlat_grid_and_esmf_mesh(tmp_path):
    nodes, quads = box_mesh(REGION_LON, REGION_LAT)
    path = write_ugrid(tmp_path / "quads.nc", nodes, quads, start_index=0)
    mesh = read_grid(path)
    assert isinstance(mesh, Polygons) and mesh.size == 16 and mesh.source_format == "ugrid"
    assert mesh.is_geographic and mesh.mesh == "mesh2d"
    assert read_cells(path).size == 16
    lonc = 0.5 * (REGION_LON[1:] + REGION_LON[:-1])
    latc = 0.5 * (REGION_LAT[1:] + REGION_LAT[:-1])
    grid = Grid(lonc, latc, "EPSG:4326", x_bounds=np.column_stack([REGION_LON[:-1], REGION_LON[1:]]),
                y_bounds=np.column_stack([REGION_LAT[:-1], REGION_LAT[1:]]))
    poly = polygons_of(nodes, quads)
    write_esmf_mesh(poly, tmp_path / "esmf.nc")
    esmf = read_grid(tmp_path / "esmf.nc")
    # the same corners, cell by cell
    np.testing.assert_array_equal(np.stack(mesh.lonlat_vertices(), -1), np.stack(grid.lonlat_vertices(), -1))

    src = region_source()
    w = weights(src, mesh)
    for other in (weights(src, grid), weights(src, poly), weights(src, esmf)):
        assert max_rel_diff(w, other) <= 1e-12
        np.testing.assert_allclose(w.area_b, other.area_b, rtol=1e-12)
    np.testing.assert_allclose(w.area_b, girard_areas(nodes, np.array(quads)), rtol=1e-10)
    np.testing.assert_allclose(w.frac_b, 1.0, rtol=0, atol=1e-12)
    check_conserved(w, np.cos(np.deg2rad(src.lonlat_centers()[1])) + src.lonlat_centers()[0] / 10)
    # centres computed as for any polygons when the file has no face_coordinates
    np.testing.assert_allclose(np.stack(mesh.lonlat_centers()), np.stack(poly.lonlat_centers()), atol=1e-12)
    # as a source too
    with pytest.warns(UserWarning, match="not mapped"):
        back = weights(mesh, src, unmapped="nan")
    with pytest.warns(UserWarning, match="not mapped"):
        assert max_rel_diff(back, weights(grid, src, unmapped="nan")) <= 1e-12


# ----------------------------------------------------------------------------------------------
# (b) triangles, quads and a pentagon, 1-based, fill values
# ----------------------------------------------------------------------------------------------
def test_mixed_mesh_one_based_with_fill_values(tmp_path):
    nodes, faces = mixed_mesh(REGION_LON, REGION_LAT)
    assert {len(f) for f in faces} == {3, 4, 5}
    path = write_ugrid(tmp_path / "mixed.nc", nodes, faces, start_index=1, fill=-999)
    with netCDF4.Dataset(path) as nc:
        conn = nc["mesh2d_face_nodes"]
        conn.set_auto_mask(False)
        raw = conn[:]
        assert raw.min() == -999 and raw[raw != -999].min() == 1  # really 1-based with fill values
    mesh = read_grid(path)
    assert mesh.size == len(faces)
    poly = polygons_of(nodes, faces)
    write_esmf_mesh(poly, tmp_path / "esmf.nc")
    esmf = read_grid(tmp_path / "esmf.nc")
    for m in (mesh, esmf):
        got = [shapely.get_coordinates(g)[:-1] for g in m.geoms]
        for k, f in enumerate(faces):
            np.testing.assert_array_equal(got[k], nodes[f])

    src = region_source()
    w = weights(src, mesh)
    for other in (weights(src, poly), weights(src, esmf)):
        assert max_rel_diff(w, other) <= 1e-12
        np.testing.assert_allclose(w.area_b, other.area_b, rtol=1e-12)
    np.testing.assert_allclose(w.area_b, girard_areas(nodes, faces), rtol=1e-10)
    # the pieces add up to the lon/lat cells (the pentagon's bulge aside)
    box_nodes, quads = box_mesh(REGION_LON, REGION_LAT)
    assert abs(w.area_b[:-1].sum() - girard_areas(box_nodes, quads)[:-1].sum()) <= 1e-12 * w.area_b.sum()
    lon, lat = src.lonlat_centers()
    check_conserved(w, 2.0 + np.sin(np.deg2rad(3 * lon)) * np.cos(np.deg2rad(lat)))
    # the same faces wound clockwise give the same weights
    cw = read_grid(write_ugrid(tmp_path / "cw.nc", nodes, [f[::-1] for f in faces], start_index=1))
    assert max_rel_diff(weights(src, cw), w) <= 1e-12
    # 0-based and transposed connectivity (face_dimension second), same cells
    t = read_grid(write_ugrid(tmp_path / "t.nc", nodes, faces, start_index=0, fill=-1, transpose=True))
    assert max_rel_diff(weights(src, t), w) <= 1e-12


def test_global_mesh_with_pole_triangles_conserves(tmp_path):
    """A 30-degree global mesh whose polar cells are triangles on one pole node, with face_coordinates."""
    lons = np.arange(0.0, 360.0, 30.0)
    lats = np.array([-60.0, -30.0, 0.0, 30.0, 60.0])
    ring = [np.column_stack([lons, np.full(lons.size, la)]) for la in lats]
    nodes = np.vstack([[[0.0, -90.0]], *ring, [[0.0, 90.0]]])
    south, north, n = 0, nodes.shape[0] - 1, lons.size

    def r(j, i):
        return 1 + j * n + (i % n)

    faces = [[south, r(0, i + 1), r(0, i)] for i in range(n)]
    faces += [[r(j, i), r(j, i + 1), r(j + 1, i + 1), r(j + 1, i)] for j in range(lats.size - 1) for i in range(n)]
    faces += [[r(lats.size - 1, i), r(lats.size - 1, i + 1), north] for i in range(n)]
    lonc = np.concatenate([lons + 15.0] * (lats.size + 1)) % 360.0
    latc = np.repeat([-75.0, -45.0, -15.0, 15.0, 45.0, 75.0], n)
    path = write_ugrid(tmp_path / "global.nc", nodes, faces, start_index=1, face_xy=(lonc, latc))
    mesh = read_grid(path)
    np.testing.assert_array_equal(np.stack(mesh.lonlat_centers()), np.stack([lonc, latc]))

    src = lonlat_grid(7.5, 6.0, lon0=-180.0)
    lon, lat = src.lonlat_centers()
    f = 2.0 + np.cos(np.deg2rad(lat)) ** 2 * np.cos(np.deg2rad(2 * lon))
    w = weights(src, mesh)
    assert w.area_b.sum() == pytest.approx(FOUR_PI, rel=1e-13)
    np.testing.assert_allclose(w.frac_b, 1.0, rtol=0, atol=1e-12)
    d = w.matrix @ f
    total = float(np.sum(f * w.area_a))
    assert abs(float(np.sum(d * w.area_b)) - total) <= 1e-12 * abs(total)
    np.testing.assert_allclose(w.area_b, girard_areas(nodes, faces), rtol=1e-12)
    # the same cells as polygons, and as the lon/lat grid (polar cells with two corners on the pole)
    assert max_rel_diff(w, weights(src, polygons_of(nodes, faces, centers=(lonc, latc)))) <= 1e-12
    assert max_rel_diff(w, weights(src, lonlat_grid(30.0))) <= 1e-12


def test_face_ids_mask_variable_and_projected_nodes(tmp_path):
    nodes, quads = box_mesh(REGION_LON, REGION_LAT)

    def add_mask(nc):
        v = nc.createVariable("active", "i1", ("mesh2d_nFaces",))
        v[:] = (np.arange(16) % 3 != 0).astype(np.int8)

    path = write_ugrid(tmp_path / "ids.nc", nodes, quads, face_ids=np.arange(16) + 1000, extra=add_mask)
    m = read_grid(path, mask="active")
    assert list(m.ids[:3]) == ["1000", "1001", "1002"]
    np.testing.assert_array_equal(m.mask, np.arange(16) % 3 != 0)
    assert read_grid(path, mask=np.ones(16)).mask.all()

    # the same cells with their nodes in LAEA Europe (EPSG:3035), the CRS in a CF grid_mapping
    from pyproj import CRS, Transformer

    laea = CRS.from_epsg(3035)
    x, y = Transformer.from_crs("EPSG:4326", laea, always_xy=True).transform(nodes[:, 0], nodes[:, 1])

    def add_gm(nc):
        g = nc.createVariable("crs", "i4")
        for k, v in laea.to_cf().items():
            g.setncattr(k, v)
        nc["mesh2d"].grid_mapping = "crs"

    path = write_ugrid(tmp_path / "laea.nc", np.column_stack([x, y]) / 1000.0, quads, extra=add_gm,
                       node_names=("x", "y"),
                       node_attrs=({"standard_name": "projection_x_coordinate", "units": "km"},
                                   {"standard_name": "projection_y_coordinate", "units": "km"}))
    p = read_grid(path)
    assert p.crs.equals(laea) and not p.is_geographic
    np.testing.assert_allclose(shapely.get_coordinates(p.geoms[0])[:-1], np.column_stack([x, y])[quads[0]],
                               rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# (c) CDO reads the UGRID file itself
# ----------------------------------------------------------------------------------------------
@pytest.mark.skipif(not cdo_available(), reason="cdo is not on PATH (apt-get install cdo)")
def test_weights_equal_cdo_gencon_on_the_ugrid_file(tmp_path):
    """CDO's conservative weights (YAC's clipping) onto the mixed mesh, read by CDO from the same file.

    CDO (CDI 2.1) does not follow face_node_connectivity: it reads a UGRID file's cells through the CF
    ``bounds`` of the face coordinates (optional in UGRID 1.0) of a data variable whose ``coordinates``
    name them. Those bounds are written here from the node lists, rows padded with their last node
    (CDO takes ``_FillValue`` bounds as coordinates); our reader uses the connectivity only.
    """
    nodes, faces = mixed_mesh(REGION_LON, REGION_LAT)
    plain = read_grid(write_ugrid(tmp_path / "plain.nc", nodes, faces, start_index=1))
    cx, cy = plain.lonlat_centers()
    nmax = max(len(f) for f in faces)
    pad = np.array([list(f) + [f[-1]] * (nmax - len(f)) for f in faces])

    def face_bounds(nc):
        nc["mesh2d"].face_coordinates = "mesh2d_face_x mesh2d_face_y"
        for name, data, k, sn, u in (("mesh2d_face_x", cx, 0, "longitude", "degrees_east"),
                                     ("mesh2d_face_y", cy, 1, "latitude", "degrees_north")):
            v = nc.createVariable(name, "f8", ("mesh2d_nFaces",))
            v.standard_name, v.units, v.bounds = sn, u, name + "_bnds"
            v[:] = data
            b = nc.createVariable(name + "_bnds", "f8", ("mesh2d_nFaces", "mesh2d_nMax_face_nodes"))
            b[:] = nodes[pad, k]
        nc["data"].coordinates = "mesh2d_face_x mesh2d_face_y"

    path = write_ugrid(tmp_path / "mixed.nc", nodes, faces, start_index=1, extra=face_bounds)
    src = region_source()
    write_cdo_cells(src, tmp_path / "src.nc")
    env = {"CDO_REMAP_NORM": "destarea", "OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    r = subprocess.run(["cdo", "-s", "griddes", "-selname,data", str(path)], capture_output=True, text=True, env=env,
                       timeout=120)
    if r.returncode != 0 or "unstructured" not in r.stdout:
        pytest.skip(f"cdo does not read the UGRID file's cells: {(r.stderr or r.stdout).strip()[-300:]}")
    (tmp_path / "grid.txt").write_text(r.stdout)
    r = subprocess.run(["cdo", "-s", f"gencon,{tmp_path / 'grid.txt'}", str(tmp_path / "src.nc"),
                        str(tmp_path / "w.nc")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    c = read_scrip_weights(tmp_path / "w.nc")
    mesh = read_grid(path)
    np.testing.assert_array_equal(np.stack(mesh.lonlat_centers()), np.stack([cx, cy]))  # face_coordinates
    w = weights(src, mesh)
    assert c.n_b == w.n_b == len(faces)
    assert max_rel_diff(w, c) <= 1e-9
    np.testing.assert_allclose(w.area_b, c.area_b, rtol=1e-9)
    np.testing.assert_allclose(w.frac_b, c.frac_b, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# (d) errors
# ----------------------------------------------------------------------------------------------
def test_network_topology_is_refused(tmp_path):
    nodes, _ = box_mesh(REGION_LON[:2], REGION_LAT[:2])

    def as_network(nc):
        t = nc["mesh2d"]
        t.delncattr("face_node_connectivity")
        t.delncattr("face_dimension")
        t.edge_node_connectivity = "mesh2d_face_nodes"

    path = write_ugrid(tmp_path / "net.nc", nodes, [[0, 1], [1, 3]], topology_dimension=1, extra=as_network)
    with pytest.raises(RegridError, match="network"):
        read_grid(path)
    with pytest.raises(RegridError, match="1-D network mesh"):
        read_grid(path, mesh="mesh2d")


def test_missing_node_coordinates(tmp_path):
    nodes, quads = box_mesh(REGION_LON, REGION_LAT)

    def drop(nc):
        nc["mesh2d"].node_coordinates = "lon_nodes lat_nodes"

    with pytest.raises(RegridError, match="'lon_nodes', 'lat_nodes', not in the file"):
        read_grid(write_ugrid(tmp_path / "a.nc", nodes, quads, extra=drop))

    def no_attr(nc):
        nc["mesh2d"].delncattr("node_coordinates")

    with pytest.raises(RegridError, match="no node_coordinates"):
        read_grid(write_ugrid(tmp_path / "b.nc", nodes, quads, extra=no_attr))


def test_several_2d_meshes_need_mesh_argument(tmp_path):
    nodes, quads = box_mesh(REGION_LON, REGION_LAT)
    nodes2, faces2 = mixed_mesh(REGION_LON, REGION_LAT)

    def second(nc):
        nc.createDimension("m2_nNodes", nodes2.shape[0])
        nc.createDimension("m2_nFaces", len(faces2))
        nc.createDimension("m2_nMax", 5)
        t = nc.createVariable("m2", "i4")
        t.cf_role, t.topology_dimension = "mesh_topology", np.int32(2)
        t.node_coordinates, t.face_node_connectivity = "m2_lon m2_lat", "m2_faces"
        for name, k, sn in (("m2_lon", 0, "longitude"), ("m2_lat", 1, "latitude")):
            v = nc.createVariable(name, "f8", ("m2_nNodes",))
            v.standard_name = sn
            v[:] = nodes2[:, k]
        v = nc.createVariable("m2_faces", "i4", ("m2_nFaces", "m2_nMax"), fill_value=-1)
        v.start_index = np.int32(0)
        conn = np.full((len(faces2), 5), -1)
        for k, f in enumerate(faces2):
            conn[k, :len(f)] = f
        v[:] = conn
        d = nc.createVariable("on_m2", "f8", ("m2_nFaces",))
        d.mesh, d.location = "m2", "face"

    path = write_ugrid(tmp_path / "two.nc", nodes, quads, extra=second)
    with pytest.raises(RegridError, match=r"2 2-D UGRID meshes \('mesh2d', 'm2'\); pass mesh="):
        read_grid(path)
    assert read_grid(path, mesh="mesh2d").size == 16
    assert read_grid(path, mesh="m2").size == len(faces2)
    assert read_cells(path, mesh="m2").size == len(faces2)
    assert read_grid(path, var="on_m2").size == len(faces2)  # the data variable's mesh attribute
    with pytest.raises(RegridError, match="'nope' not found; the mesh topology variables are 'mesh2d'"):
        read_grid(path, mesh="nope")
    with pytest.raises(RegridError, match="not a UGRID mesh topology"):
        read_grid(path, mesh="m2_lon")
    # the command line picks the mesh of each side: --src-mesh / --dst-mesh
    from coupler.regrid.cli import main
    from coupler.regrid.weights import read_weights

    out = tmp_path / "w.nc"
    assert main(["weights", str(path), str(path), "-o", str(out), "--src-mesh", "mesh2d", "--dst-mesh", "m2",
                 "--quiet"]) == 0
    w = read_weights(out)
    assert (w.n_a, w.n_b) == (16, len(faces2))


def test_fill_values_inside_a_row_and_bad_indices(tmp_path):
    nodes, quads = box_mesh(REGION_LON, REGION_LAT)
    faces = [list(q) for q in quads]
    path = write_ugrid(tmp_path / "a.nc", nodes, faces, start_index=1)
    with netCDF4.Dataset(path, "a") as nc:
        nc["mesh2d_face_nodes"][2, 1] = -999
    with pytest.raises(RegridError, match="fill values before its last node"):
        read_grid(path)
    path = write_ugrid(tmp_path / "b.nc", nodes, faces, start_index=1)
    with netCDF4.Dataset(path, "a") as nc:
        nc["mesh2d_face_nodes"][3, 0] = 0  # 0 with start_index 1
    with pytest.raises(RegridError, match="outside 1..25"):
        read_grid(path)
