"""Tests of bmi_dhydro.partition (pure functions, no MPI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bmi_dhydro.partition import (
    NGEN_NEX_TO_DEST,
    NGEN_ORIG_TO_NEX,
    Decomposition,
    NgenPartition,
    count_cut_links,
    decompose,
    downstream_units,
    load_ngen_network,
    ngen_partition_risks,
    ngen_partitions,
    partition_units,
    read_ngen_partitions,
    validate_ngen_partitions,
    write_ngen_partitions,
    write_ngen_partition_file,
)

DATA = Path(__file__).parent / "data" / "partitions"
EXAMPLE = DATA / "simple_partition2.json"
NGEN_DATA = Path(__file__).resolve().parents[1] / "examples" / "ngen" / "data"
SAMPLE_CATS, SAMPLE_NEXS = NGEN_DATA / "catchment_data.geojson", NGEN_DATA / "nexus_data.geojson"
GAUGE_GPKG = NGEN_DATA / "gauge_01073000" / "gauge_01073000.gpkg"
CATS = DATA / "simple_catchment_data.json"
NEXS = DATA / "simple_nexus_data.json"


# --------------------------------------------------------------------------- #
# synthetic networks
# --------------------------------------------------------------------------- #


def random_tree(n: int, seed: int, *, with_nexus: bool = True, window: int = 30):
    """A random dendritic network over n units (ids in shuffled order)."""
    rng = np.random.default_rng(seed)
    names = [f"cat-{i}" for i in range(n)]
    toid: dict = {}
    for i, u in enumerate(names):
        down = names[int(rng.integers(i + 1, min(n, i + window)))] if i < n - 1 and rng.random() < 0.9 else "NA"
        if with_nexus:
            toid[u] = f"nex-{i}"
            toid[f"nex-{i}"] = down
        else:
            toid[u] = down
    ids = list(rng.permutation(names))
    return ids, toid


def basins(sizes, seed: int | None = 0):
    """Independent chain-shaped basins of the given sizes, ids interleaved at random
    (``seed=None``: ids basin by basin)."""
    rng = np.random.default_rng(seed)
    toid: dict = {}
    members = []
    for b, size in enumerate(sizes):
        names = [f"b{b}-u{i}" for i in range(size)]
        for i, u in enumerate(names):
            toid[u] = f"b{b}-nex{i}"
            toid[f"b{b}-nex{i}"] = names[i + 1] if i + 1 < size else "NA"
        members.append(names)
    ids = [u for names in members for u in names]
    if seed is not None:
        ids = [ids[i] for i in rng.permutation(len(ids))]
    return ids, toid, members


def contiguous_split(ids, n):
    bounds = np.linspace(0, len(ids), n + 1).round().astype(int)
    return [ids[bounds[k]: bounds[k + 1]] for k in range(n)]


# --------------------------------------------------------------------------- #
# balance
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("n_units,n_parts", [(1, 1), (7, 3), (100, 7), (1000, 16), (5, 5)])
def test_count_balance_without_network(n_units, n_parts):
    ids = [f"u{i}" for i in range(n_units)]
    parts = partition_units(ids, n_parts)
    sizes = [len(p) for p in parts]
    assert len(parts) == n_parts and min(sizes) >= 1
    assert max(sizes) - min(sizes) <= 1
    # contiguous runs of the input order, in order
    assert [u for p in parts for u in p] == ids


def test_cost_balance_beats_count_split():
    rng = np.random.default_rng(3)
    ids = [f"u{i}" for i in range(2000)]
    area = rng.lognormal(2.0, 1.0, len(ids))
    area[:200] *= 10  # a heavy head: a count split is badly unbalanced
    for n in (2, 3, 8):
        dec = decompose(ids, n, cost=area)
        bound = 1 + 2 * area.max() / (area.sum() / n)
        assert dec.imbalance(area) <= bound
        naive = Decomposition.from_parts(ids, contiguous_split(ids, n))
        assert dec.imbalance(area) < naive.imbalance(area)


@pytest.mark.parametrize("n_parts", [2, 3, 5, 12])
def test_balance_with_network(n_parts):
    ids, toid = random_tree(3000, seed=n_parts)
    rng = np.random.default_rng(1)
    area = rng.uniform(1, 20, len(ids))
    tol = 0.02
    dec = decompose(ids, n_parts, cost=area, toid=toid, tolerance=tol)
    mean = area.sum() / n_parts
    pc = dec.part_costs(area)
    # each cut moves at most tolerance*mean plus one unit from the ideal
    slack = 2 * (tol * mean + area.max())
    assert np.all(np.abs(pc - mean) <= slack), (pc, mean, slack)
    assert dec.counts.min() >= 1


def test_zero_cost_units_are_allowed():
    ids = [f"u{i}" for i in range(10)]
    cost = [0, 0, 0, 5, 0, 0, 5, 0, 0, 0]
    dec = decompose(ids, 2, cost=cost)
    assert dec.part_costs(cost).tolist() == [5.0, 5.0]


# --------------------------------------------------------------------------- #
# connectivity
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("n_parts", [2, 3, 6])
def test_whole_basins_stay_together(n_parts):
    ids, toid, members = basins([50] * 6, seed=n_parts)
    parts = partition_units(ids, n_parts, toid=toid)
    dec = Decomposition.from_parts(ids, parts)
    assert count_cut_links(dec, toid) == 0
    for names in members:
        assert len({dec.rank_of(u) for u in names}) == 1
    # the same split of the shuffled input order without the network cuts many links
    assert count_cut_links(contiguous_split(ids, n_parts), toid) > 10


def test_tolerance_trades_balance_for_fewer_cuts():
    # basin boundaries at 30, 64, 100 units; the balanced cut (70) is inside a basin
    ids, toid, members = basins([30, 34, 36, 40], seed=None)
    strict = decompose(ids, 2, toid=toid, tolerance=0.0)
    loose = decompose(ids, 2, toid=toid, tolerance=0.1)
    assert strict.counts.tolist() == [70, 70]
    assert count_cut_links(strict, toid) >= 1
    assert count_cut_links(loose, toid) == 0
    assert loose.counts.tolist() == [64, 76]


def test_chain_is_cut_minimally():
    n = 5000  # deep: the traversal must not recurse
    ids = [f"c{i}" for i in range(n)]
    toid = {ids[i]: ids[i + 1] for i in range(n - 1)}
    for k in (2, 4, 7):
        dec = decompose(ids, k, toid=toid)
        assert count_cut_links(dec, toid) == k - 1
        assert dec.counts.max() - dec.counts.min() <= 1


@pytest.mark.parametrize("with_nexus", [True, False])
def test_network_partition_cuts_far_fewer_links(with_nexus):
    ids, toid = random_tree(4000, seed=5, with_nexus=with_nexus)
    for n in (2, 4, 8):
        net_cut = count_cut_links(partition_units(ids, n, toid=toid), toid)
        blind_cut = count_cut_links(contiguous_split(ids, n), toid)
        assert net_cut * 10 < blind_cut, (n, net_cut, blind_cut)


def test_downstream_units_follow_nexuses():
    ids, toid, _ = load_ngen_network(CATS, NEXS)
    down = dict(zip(ids, downstream_units(ids, toid)))
    # read the expectation from the files: cat -> nex -> cat
    cats = {f["properties"]["id"]: f["properties"]["toid"] for f in json.loads(CATS.read_text())["features"]}
    nexs = {f["properties"]["id"]: f["properties"]["toid"] for f in json.loads(NEXS.read_text())["features"]}
    for c, nex in cats.items():
        target = nexs[nex]
        assert down[c] == (None if target == "NA" else target)


# --------------------------------------------------------------------------- #
# determinism
# --------------------------------------------------------------------------- #


def test_deterministic_within_and_across_processes():
    ids, toid = random_tree(1500, seed=9)
    area = np.random.default_rng(2).uniform(1, 5, len(ids))
    first = partition_units(ids, 4, cost=area, toid=toid)
    assert first == partition_units(ids, 4, cost=area, toid=toid)
    code = (
        "import importlib.util, json, sys; sys.path.insert(0, sys.argv[1]);"
        "import numpy as np;"
        "spec = importlib.util.spec_from_file_location('tp', sys.argv[2]);"
        "tp = importlib.util.module_from_spec(spec); spec.loader.exec_module(tp);"
        "from bmi_dhydro.partition import partition_units;"
        "ids, toid = tp.random_tree(1500, seed=9);"
        "area = np.random.default_rng(2).uniform(1, 5, len(ids));"
        "print(json.dumps(partition_units(ids, 4, cost=area, toid=toid)))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", code, root, str(Path(__file__).resolve())],
        capture_output=True, text=True, env=env, timeout=120, cwd=root,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == first


# --------------------------------------------------------------------------- #
# Decomposition
# --------------------------------------------------------------------------- #


def test_decomposition_orders():
    ids, toid = random_tree(300, seed=4)
    dec = decompose(ids, 3, toid=toid)
    a = np.arange(len(ids) * 2, dtype=np.float64).reshape(len(ids), 2)
    rm = dec.to_rank_major(a)
    assert np.array_equal(dec.from_rank_major(rm), a)
    for r in range(3):
        idx = dec.indices(r)
        assert np.all(np.diff(idx) > 0)  # global order kept inside a rank
        rows = rm[dec.displs[r]: dec.displs[r] + dec.counts[r]]
        assert np.array_equal(rows, dec.local_rows(a, r))
        assert dec.units(r) == [ids[i] for i in idx]
        assert all(dec.rank_of(u) == r for u in dec.units(r))
    assert dec.counts.sum() == len(ids)
    # along another axis
    b = a.T.copy()
    assert np.array_equal(dec.from_rank_major(dec.to_rank_major(b, axis=1), axis=1), b)
    assert Decomposition.from_parts(ids, dec.parts) == dec
    with pytest.raises(ValueError, match="expected 300 rows"):
        dec.to_rank_major(a[:-1])
    with pytest.raises(ValueError, match="rank: expected an integer 0..2"):
        dec.indices(3)
    with pytest.raises(KeyError, match="not in this decomposition"):
        dec.rank_of("nope")
    assert not dec.assignment.flags.writeable


def test_decomposition_errors():
    ids = ["a", "b", "c"]
    with pytest.raises(ValueError, match="unit 'b' is not one of"):
        Decomposition.from_parts(["a", "c"], [["a"], ["b", "c"]])
    with pytest.raises(ValueError, match="unit 'a' is already in part 0"):
        Decomposition.from_parts(ids, [["a", "b"], ["a", "c"]])
    with pytest.raises(ValueError, match="'c'.* in no part"):
        Decomposition.from_parts(ids, [["a"], ["b"]])
    with pytest.raises(ValueError, match="unit 'c' is assigned to rank 5"):
        Decomposition(ids, [0, 1, 5], n_parts=2)
    with pytest.raises(ValueError, match="expected one rank per unit"):
        Decomposition(ids, [0, 1])


# --------------------------------------------------------------------------- #
# input errors
# --------------------------------------------------------------------------- #


def test_input_errors_name_the_culprit():
    ids = ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="unit 'b' appears twice"):
        partition_units(["a", "b", "b"], 2)
    with pytest.raises(ValueError, match="empty"):
        partition_units([], 1)
    with pytest.raises(ValueError, match="cannot split 4 unit.* into 5"):
        partition_units(ids, 5)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="n_parts: expected a positive integer"):
            partition_units(ids, bad)
    for bad in (2.0, True, "2"):
        with pytest.raises(TypeError, match="n_parts"):
            partition_units(ids, bad)
    with pytest.raises(ValueError, match="unit 'c' has cost nan"):
        partition_units(ids, 2, cost=[1, 1, float("nan"), 1])
    with pytest.raises(ValueError, match="unit 'a' has cost -1.0"):
        partition_units(ids, 2, cost=[-1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"shape \(4,\), got shape \(3,\)"):
        partition_units(ids, 2, cost=[1, 1, 1])
    with pytest.raises(ValueError, match="no cost given for unit.*'d'"):
        partition_units(ids, 2, cost={"a": 1, "b": 1, "c": 1})
    with pytest.raises(ValueError, match="all units have zero cost"):
        partition_units(ids, 2, cost=[0, 0, 0, 0])
    with pytest.raises(ValueError, match="cycle: 'a' -> 'x' -> 'b' -> 'a'"):
        partition_units(ids, 2, toid={"a": "x", "x": "b", "b": "a"})
    with pytest.raises(ValueError, match="'c' drains into itself"):
        partition_units(ids, 2, toid={"c": "c"})
    with pytest.raises(ValueError, match="one downstream id per unit"):
        partition_units(ids, 2, toid=["b", "c"])
    with pytest.raises(ValueError, match="tolerance"):
        partition_units(ids, 2, tolerance=-0.1)


def test_toid_terminal_values_and_sequences():
    ids = ["a", "b", "c", "d"]
    for terminal in (None, float("nan"), "", "NA", "none"):
        parts = partition_units(ids, 2, toid=["b", terminal, "d", terminal])
        assert count_cut_links(parts, dict(zip(ids, ["b", terminal, "d", terminal]))) == 0
    # a mapping and the aligned sequence give the same answer
    assert partition_units(ids, 2, toid={"a": "b", "c": "d"}) == partition_units(
        ids, 2, toid=["b", None, "d", None]
    )


# --------------------------------------------------------------------------- #
# ngen partition files
# --------------------------------------------------------------------------- #


def test_read_ngen_example_matches_raw_json():
    raw = json.loads(EXAMPLE.read_text())
    parts = read_ngen_partitions(EXAMPLE)
    assert [p.to_dict() for p in parts] == raw["partitions"]
    assert all(isinstance(p, NgenPartition) for p in parts)
    directions = {rc.cat_direction for p in parts for rc in p.remote_connections}
    assert directions <= {NGEN_ORIG_TO_NEX, NGEN_NEX_TO_DEST}


def test_ngen_round_trip(tmp_path):
    parts = read_ngen_partitions(EXAMPLE)
    out = tmp_path / "written.json"
    write_ngen_partitions(parts, out)
    assert json.loads(out.read_text()) == json.loads(EXAMPLE.read_text())
    again = read_ngen_partitions(out)
    assert again == parts
    # and once more through an open file
    out2 = tmp_path / "written2.json"
    with open(out2, "w", encoding="utf-8") as fh:
        write_ngen_partitions(again, fh)
    assert out2.read_text() == out.read_text()


def test_generate_ngen_example_from_network():
    """Partitioning ngen's example network in two reproduces ngen's example file."""
    ids, toid, area = load_ngen_network(CATS, NEXS)
    assert area is not None and area.shape == (len(ids),)
    parts = partition_units(ids, 2, cost=area, toid=toid)
    generated = ngen_partitions(parts, toid)
    validate_ngen_partitions(generated)
    assert generated == read_ngen_partitions(EXAMPLE)
    dec = Decomposition.from_ngen(generated, ids)
    assert dec.to_ngen(toid) == generated


@pytest.mark.parametrize("n_parts", [1, 3, 4, 8])
def test_generated_ngen_partitions_are_consistent(n_parts, tmp_path):
    ids, toid, _ = load_ngen_network(CATS, NEXS)
    parts = ngen_partitions(partition_units(ids, n_parts, toid=toid), toid)
    validate_ngen_partitions(parts)
    write_ngen_partitions(parts, tmp_path / "p.json")
    assert read_ngen_partitions(tmp_path / "p.json") == parts
    # every cross-rank link appears as a send on the upstream side
    sends = {(p.id, rc.nex_id) for p in parts for rc in p.remote_connections if rc.cat_direction == NGEN_NEX_TO_DEST}
    cut = count_cut_links(Decomposition.from_ngen(parts, ids), toid)
    assert (len(sends) == 0) == (cut == 0)


def test_generated_ngen_partitions_large_network():
    ids, toid = random_tree(2000, seed=8)
    parts = ngen_partitions(partition_units(ids, 6, toid=toid), toid)
    validate_ngen_partitions(parts)
    assert sum(len(p.cat_ids) for p in parts) == len(ids)


def _write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def _p(d, i):
    return d["partitions"][i]


def _rc(d, i):
    return d["partitions"][i]["remote-connections"][0]


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: _p(d, 1)["cat-ids"].append("cat-0"), "catchment 'cat-0' is in partition 0 and in partition 1"),
        (lambda d: _rc(d, 0).update({"mpi-rank": 5}), "mpi-rank 5 is not a partition id"),
        (lambda d: _p(d, 1).update({"remote-connections": []}), "no matching 'orig_cat-to-nex' receive"),
        (lambda d: _p(d, 1).update({"id": 3}), "position 1 has id 3"),
        (lambda d: _rc(d, 0).update({"cat-direction": "up"}), "cat-direction: expected"),
        (lambda d: _p(d, 0).pop("nex-ids"), r"partitions\[0\]: missing key\(s\) 'nex-ids'"),
        (lambda d: _rc(d, 0).update({"cat-id": "cat-3"}), "'cat-3' is owned by partition 0"),
        (lambda d: _p(d, 0).update({"nex-ids": ["nex-0"]}), "nexus 'nex-1' is not in this partition's nex-ids"),
        (lambda d: _p(d, 0).update({"id": "0"}), r"partitions\[0\].id: expected an integer"),
        (lambda d: d.pop("partitions"), "missing key"),
    ],
)
def test_ngen_validation_errors(tmp_path, mutate, message):
    data = json.loads(EXAMPLE.read_text())
    mutate(data)
    with pytest.raises(ValueError, match=message):
        read_ngen_partitions(_write_json(tmp_path / "bad.json", data))


def test_ngen_io_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_ngen_partitions(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{ not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_ngen_partitions(tmp_path / "broken.json")
    # writing validates, and never leaves a file behind when it refuses
    parts = read_ngen_partitions(EXAMPLE)
    bad = [parts[0], NgenPartition(1, parts[1].cat_ids + ("cat-0",), parts[1].nex_ids, parts[1].remote_connections)]
    with pytest.raises(ValueError, match="cat-0"):
        write_ngen_partitions(bad, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_ngen_needs_nexus_layer():
    with pytest.raises(ValueError, match="'a' drains directly into catchment 'b'"):
        ngen_partitions([["a"], ["b"]], {"a": "b"})


def _reference_postorder(parent):
    """Plain recursive-free DFS used to check the vectorised traversal."""
    n = len(parent)
    children = [[] for _ in range(n)]
    for v, p in enumerate(parent):
        if p >= 0:
            children[p].append(v)
    out = []
    for root in [v for v in range(n) if parent[v] < 0]:
        stack = [(root, iter(children[root]))]
        while stack:
            v, it = stack[-1]
            child = next(it, None)
            if child is None:
                out.append(v)
                stack.pop()
            else:
                stack.append((child, iter(children[child])))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_postorder_matches_reference(seed):
    from bmi_dhydro.partition import _postorder

    rng = np.random.default_rng(seed)
    n = 400
    # a random forest whose parents have higher *or lower* index than children
    perm = rng.permutation(n)
    parent = np.full(n, -1)
    for k in range(1, n):
        if rng.random() < 0.9:
            parent[perm[k]] = perm[int(rng.integers(0, k))]
    order, levels = _postorder(parent)
    assert order.tolist() == _reference_postorder(parent.tolist())
    assert sorted(np.concatenate(levels).tolist()) == list(range(n))


# --------------------------------------------------------------------------- #
# partitions ngen master can run (its remote nexus, HY_PointHydroNexusRemote)
# --------------------------------------------------------------------------- #


def replay_ngen_receives(partitions, toid, n_steps=720):
    """ngen master's receive bookkeeping for every receiving remote nexus, with the senders always ahead.

    Per rank and output step ngen calls ``add_upstream_flow`` once per local upstream catchment of a nexus
    (Layer::update_models), then ``get_downstream_flow`` once (SurfaceLayer::update_models).  The remote nexus
    (src/core/nexus/HY_PointHydroNexusRemote.cpp at dd04bbcc): ``add_upstream_flow`` first completes whatever
    posted receives have a message (process_communications), then, if none is pending, posts one receive per
    upstream rank; ``get_downstream_flow`` posts them if none is pending and waits for all.  Each upstream rank
    sends one message per step (when all its local upstream catchments have added theirs); a sender running ahead
    means every message is already there when a receive is tested.  Returns ``{nexus: step at which the receiving
    rank waits for a message that never comes}`` (empty: every rank completes the run).
    """
    origins: dict = {}
    for key, val in toid.items():
        if key.startswith("cat-") and isinstance(val, str):
            origins.setdefault(val, []).append(key)
    hangs = {}
    for p in partitions:
        upstream = {}
        for rc in p.remote_connections:
            if rc.cat_direction == NGEN_ORIG_TO_NEX:
                upstream.setdefault(rc.nex_id, set()).add(rc.mpi_rank)
        for nex, ranks in upstream.items():
            n_local = sum(1 for c in origins.get(nex, []) if c in p.cat_ids)
            sent = {r: n_steps for r in ranks}  # messages each upstream rank sends over the run
            pending: list = []

            def process():
                for r in list(pending):
                    if sent[r] > 0:  # a message is there: the receive completes
                        sent[r] -= 1
                        pending.remove(r)

            for t in range(n_steps):
                for _ in range(n_local):  # add_upstream_flow
                    process()
                    if not pending:
                        pending.extend(sorted(ranks))
                if not pending:  # get_downstream_flow
                    pending.extend(sorted(ranks))
                process()
                if pending:
                    hangs[nex] = t
                    break
    return hangs


def _gauge_toid():
    return {"cat-11223": "nex-11224", "cat-11410": "nex-11223", "cat-11371": "nex-11224", "cat-11509": "nex-11224",
            "cat-11224": "nex-11225", "nex-11223": "cat-11223", "nex-11224": "cat-11224", "nex-11225": "wb-11225"}


def test_gauge_geopackage_network_reads_as_ngen_links_it():
    ids, toid, area = load_ngen_network(GAUGE_GPKG)
    assert ids == ["cat-11223", "cat-11410", "cat-11371", "cat-11509", "cat-11224"]
    assert toid == _gauge_toid()  # the nexus toid wb-N is divide cat-N (ngen's update_ids("id")); wb-11225 is outside
    np.testing.assert_allclose(area, [13.2574, 5.6461, 5.4540, 3.3237, 3.9749], atol=1e-4)
    assert load_ngen_network(GAUGE_GPKG, GAUGE_GPKG) == (ids, toid, pytest.approx(area))


def test_the_split_that_hung_ngen_is_flagged_and_replays_as_a_hang():
    """The 2-rank split that hung ngen master at step 360 of 720 on gauge_01073000, every time."""
    ids, toid, area = load_ngen_network(GAUGE_GPKG)
    hung = [["cat-11223", "cat-11410"], ["cat-11371", "cat-11509", "cat-11224"]]
    assert decompose(ids, 2, cost=area, toid=toid).parts == hung  # the plain area-balanced split
    risks = ngen_partition_risks(hung, toid)
    assert len(risks) == 1 and "nex-11224" in risks[0] and "2 of its 3" in risks[0]
    unchecked = ngen_partitions(hung, toid, check=False)
    assert replay_ngen_receives(unchecked, toid) == {"nex-11224": 360}  # what ngen did
    with pytest.raises(ValueError, match="nex-11224"):
        ngen_partitions(hung, toid)
    # one local upstream catchment, or none, or all: one receive per step
    for ok in ([["cat-11223", "cat-11410", "cat-11509"], ["cat-11371", "cat-11224"]],
               [["cat-11410"], ["cat-11223", "cat-11371", "cat-11509", "cat-11224"]],
               [["cat-11410", "cat-11371", "cat-11509"], ["cat-11223", "cat-11224"]]):
        assert ngen_partition_risks(ok, toid) == []
        assert replay_ngen_receives(ngen_partitions(ok, toid), toid) == {}


@pytest.mark.parametrize("domain", ["sample", "gauge"])
def test_partition_files_for_the_sample_hydrofabrics_are_ones_ngen_completes(domain, tmp_path):
    if domain == "sample":
        ids, toid, area = load_ngen_network(SAMPLE_CATS, SAMPLE_NEXS)
        args = (SAMPLE_CATS,)
        kwargs = {"nexuses": SAMPLE_NEXS}
    else:
        ids, toid, area = load_ngen_network(GAUGE_GPKG)
        args, kwargs = (GAUGE_GPKG,), {}
    receivers = 0
    for n in range(1, len(ids) + 1):
        out = tmp_path / f"partition_{n}.json"
        written = write_ngen_partition_file(*args, n, out, **kwargs)
        parts = read_ngen_partitions(out)
        assert parts == written and len(parts) == n
        assert sorted(c for p in parts for c in p.cat_ids) == sorted(ids)
        assert ngen_partition_risks(parts, toid) == []  # the property relied on
        assert replay_ngen_receives(parts, toid) == {}
        receivers += sum(rc.cat_direction == NGEN_ORIG_TO_NEX for p in parts for rc in p.remote_connections)
        # balanced as well as the network allows: never worse than one rank holding the two largest divides
        costs = Decomposition.from_ngen(parts, ids).part_costs(area)
        assert costs.max() <= max(area.sum() / n, np.sort(area)[-2:].sum()) + 1e-9
    assert (receivers > 0) == (domain == "gauge")  # the gauge domain does exchange flows between ranks
    if domain == "gauge":
        two = read_ngen_partitions(tmp_path / "partition_2.json")
        assert [sorted(p.cat_ids) for p in two] == [["cat-11371", "cat-11410", "cat-11509"], ["cat-11223", "cat-11224"]]


def confluence_network(n, seed, p_k=(0.3, 0.1, 0.3, 0.2, 0.1)):
    """A random network grown from an outlet: each catchment has k upstream catchments with probability p_k[k],
    all draining into its one upstream nexus (ngen's layout: confluences of 2, 3 and 4 catchments)."""
    rng = np.random.default_rng(seed)
    names = [f"cat-{i}" for i in range(n)]
    toid = {"cat-0": "nex-out", "nex-out": "NA"}
    frontier, nxt = [0], 1
    while frontier and nxt < n:
        d = frontier.pop(0)
        for _ in range(int(rng.choice(len(p_k), p=p_k))):
            if nxt < n:
                toid[names[nxt]], toid[f"nex-{d}"] = f"nex-{d}", names[d]
                frontier.append(nxt)
                nxt += 1
    for i in range(nxt, n):  # leftovers: single-catchment basins
        toid[names[i]], toid[f"nex-out-{i}"] = f"nex-out-{i}", "NA"
    ids = [names[i] for i in rng.permutation(n)]
    return ids, toid, rng.lognormal(0.0, 0.7, n)


def test_ngen_safe_splits_of_confluence_networks():
    flagged = 0
    for seed in range(8):
        ids, toid, cost = confluence_network(int(np.random.default_rng(seed).integers(40, 400)), seed)
        for n in (2, 3, 5, 8):
            plain = decompose(ids, n, cost=cost, toid=toid)
            safe = decompose(ids, n, cost=cost, toid=toid, ngen_safe=True)
            flagged += bool(ngen_partition_risks(plain, toid))
            assert ngen_partition_risks(safe, toid) == []
            assert replay_ngen_receives(ngen_partitions(safe, toid), toid, n_steps=50) == {}
            if not ngen_partition_risks(plain, toid):
                assert safe == plain  # nothing to avoid: the best balanced split is kept
            # the price: a few catchments moved, not a worse balance than three of the costliest ones
            assert safe.part_costs(cost).max() <= plain.part_costs(cost).max() + 3 * cost.max()
            assert min(safe.counts) >= 1
    assert flagged >= 8, flagged  # these networks do produce splits ngen cannot run


def test_ngen_safe_needs_a_network_and_the_cli_writes_the_file(tmp_path, capsys):
    from bmi_dhydro.partition import main

    with pytest.raises(ValueError, match="ngen_safe: needs toid"):
        decompose(["a", "b"], 2, ngen_safe=True)
    assert main([str(GAUGE_GPKG), "2", "-o", str(tmp_path / "p.json")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert ngen_partition_risks(read_ngen_partitions(tmp_path / "p.json"), _gauge_toid()) == []
