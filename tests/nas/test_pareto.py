import itertools

import numpy as np
import pytest

from nas.pareto import crowding_distance, hypervolume, nondominated_ranks, pareto_mask


def brute_front(p, dirs):
    p = np.asarray(p) * np.array([-1 if d == "maximize" else 1 for d in dirs])
    return [not any((q <= x).all() and (q < x).any() for q in p) for x in p]


@pytest.mark.parametrize("seed", range(10))
def test_front_and_ranks_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, 6, size=(30, 2)).astype(float)  # ties included
    dirs = ["maximize", "minimize"]
    assert pareto_mask(pts, dirs).tolist() == brute_front(pts, dirs)
    ranks = nondominated_ranks(pts, dirs)
    rest = pts.copy()
    idx = np.arange(len(pts))
    r = 0
    while len(rest):
        front = np.array(brute_front(rest, dirs))
        assert (ranks[idx[front]] == r).all()
        rest, idx, r = rest[~front], idx[~front], r + 1


def test_crowding_distance():
    d = crowding_distance([[0, 4], [1, 2], [2, 1], [4, 0]], ["minimize", "minimize"])
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx(2 / 4 + 3 / 4) and d[2] == pytest.approx(3 / 4 + 2 / 4)


def grid_volume(points, ref, n=200):
    """Monte-Carlo-free check: count dominated cells of a fine grid (minimisation, 2-D/3-D)."""
    pts = np.asarray(points)
    axes = [np.linspace(0, r, n, endpoint=False) + r / (2 * n) for r in ref]
    cells = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(ref))
    dominated = np.zeros(len(cells), bool)
    for p in pts:
        dominated |= (cells >= p).all(1)
    return dominated.mean() * np.prod(ref)


@pytest.mark.parametrize("dim", [2, 3])
def test_hypervolume_against_a_grid(dim):
    rng = np.random.default_rng(dim)
    pts = rng.uniform(0, 1, size=(8, dim))
    ref = [1.0] * dim
    hv = hypervolume(pts, ["minimize"] * dim, ref)
    assert hv == pytest.approx(grid_volume(pts, ref, n=200 if dim == 2 else 60), rel=0.03)
    # maximisation is the mirror image
    assert hypervolume(1 - pts, ["maximize"] * dim, [0.0] * dim) == pytest.approx(hv)
    # adding a dominated point changes nothing
    worse = np.vstack([pts, pts.max(0)])
    assert hypervolume(worse, ["minimize"] * dim, ref) == pytest.approx(hv)


def test_hypervolume_small_cases():
    assert hypervolume([[1, 2], [2, 1]], ["minimize"] * 2, [3, 3]) == 3
    for perm in itertools.permutations([[1, 2], [2, 1], [2.5, 2.5]]):
        assert hypervolume(list(perm), ["minimize"] * 2, [3, 3]) == 3
    assert hypervolume([[5, 5]], ["minimize"] * 2, [3, 3]) == 0


@pytest.mark.parametrize("n,m", [(1, 1), (2, 2), (37, 2), (257, 2), (200, 3), (64, 1)], ids=lambda v: str(v))
@pytest.mark.parametrize("directions", ["max", "min", "mixed"])
def test_the_front_at_every_size_and_direction(n, m, directions):
    rng = np.random.default_rng(n * 10 + m)
    # coarse values: ties and exact duplicates, which must both stay on the front
    points = rng.integers(0, 6, size=(n, m)).astype(float)
    dirs = {
        "max": ["maximize"] * m,
        "min": ["minimize"] * m,
        "mixed": [("maximize", "minimize")[i % 2] for i in range(m)],
    }[directions]
    assert pareto_mask(points, dirs).tolist() == brute_front(points, dirs)


def test_the_front_of_ten_thousand_points_takes_little_time():
    import time

    rng = np.random.default_rng(0)
    points = rng.normal(size=(10_000, 2))
    t0 = time.perf_counter()
    mask = pareto_mask(points, ["maximize", "maximize"])
    assert time.perf_counter() - t0 < 2.0 and 1 <= mask.sum() < 100
