"""Tests of ras2s.tiling: geometry, exactness, blending, memory, budget."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ras2s.tiling as tiling
from ras2s.errors import InputError
from ras2s.tiling import Tile, balanced_tile, blend_window, run_tiled, tile_for_budget, tile_grid

DTYPES = [np.float32, np.float64, np.uint16, np.int16, np.uint8]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240917)


def random_cube(rng: np.random.Generator, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def identity(x: np.ndarray) -> np.ndarray:
    return x


def box3(x: np.ndarray) -> np.ndarray:
    """3x3 box blur with zero padding: correct inside a tile, wrong on its edge pixels."""
    h, w = x.shape[1:]
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    return sum(p[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / np.float32(9)


@st.composite
def geometries(draw, max_side: int = 40, max_tile: int = 16):
    """(H, W, tile, overlap) with tile an int or a (tile_h, tile_w) pair."""
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    tile_h = draw(st.integers(1, max_tile))
    if draw(st.booleans()):
        tile, smallest = tile_h, tile_h
    else:
        tile_w = draw(st.integers(1, max_tile))
        tile, smallest = (tile_h, tile_w), min(tile_h, tile_w)
    overlap = draw(st.integers(0, smallest - 1))
    return height, width, tile, overlap


def pair(tile) -> tuple[int, int]:
    return (tile, tile) if isinstance(tile, int) else tuple(tile)


# ---------------------------------------------------------------------------------------
# geometry


@given(geometries(max_side=80, max_tile=24))
def test_grid_covers_every_pixel_inside_and_full_size(geometry):
    height, width, tile, overlap = geometry
    tiles = tile_grid(height, width, tile, overlap)
    tile_h, tile_w = pair(tile)
    size = (min(tile_h, height), min(tile_w, width))
    count = np.zeros((height, width), dtype=int)
    for t in tiles:
        assert isinstance(t, Tile)
        assert 0 <= t.y0 < t.y1 <= height and 0 <= t.x0 < t.x1 <= width
        assert t.shape == size
        count[t.window] += 1
    assert count.min() >= 1
    assert len(set(tiles)) == len(tiles)
    assert tiles == sorted(tiles, key=lambda t: (t.y0, t.x0))  # raster order

    # Along each axis: starts step by tile - overlap, the last one ends at the border,
    # neighbours share at least the (clipped) overlap, and no tile is superfluous.
    for length, t_size, starts in (
        (height, size[0], sorted({t.y0 for t in tiles})),
        (width, size[1], sorted({t.x0 for t in tiles})),
    ):
        clipped = min(overlap, t_size - 1)
        step = t_size - clipped
        assert starts[0] == 0 and starts[-1] + t_size == length
        assert all(b - a == step for a, b in zip(starts[:-2], starts[1:-1], strict=True))
        assert all(0 < b - a <= step for a, b in zip(starts, starts[1:], strict=False))
        assert len(starts) == (1 if length == t_size else -(-(length - t_size) // step) + 1)
    assert len(tiles) == len({t.y0 for t in tiles}) * len({t.x0 for t in tiles})


def test_grid_examples():
    assert [(t.y0, t.y1) for t in tile_grid(10, 1, 4, 1)] == [(0, 4), (3, 7), (6, 10)]
    # The last tile is shifted back: it overlaps its neighbour by 3 > 1.
    assert [(t.x0, t.x1) for t in tile_grid(1, 11, 4, 1)] == [(0, 4), (3, 7), (6, 10), (7, 11)]
    # An image smaller than the tile is a single tile, whatever the overlap.
    assert tile_grid(5, 3, 8, 7) == [Tile(0, 5, 0, 3)]
    assert tile_grid(5, 3, (2, 8), 1) == [Tile(y, y + 2, 0, 3) for y in (0, 1, 2, 3)]
    assert tile_grid(3, 2, 1, 0) == [Tile(y, y + 1, x, x + 1) for y in range(3) for x in range(2)]


@pytest.mark.parametrize(
    ("tile", "overlap", "match"),
    [
        (4, 4, "overlap must be smaller than the tile"),
        (4, 9, "overlap must be smaller than the tile"),
        ((8, 3), 3, "overlap must be smaller than the tile"),
        (4, -1, "overlap must be >= 0"),
        (0, 0, "tile must be >= 1"),
        ((4, 0), 0, "tile width must be >= 1"),
        ((4, 4, 4), 0, "tile must be an int or"),
        (4.0, 0, "tile must be an integer"),
        (True, 0, "tile must be an integer"),
    ],
)
def test_bad_tile_or_overlap(tile, overlap, match):
    with pytest.raises(InputError, match=match):
        tile_grid(20, 20, tile, overlap)
    with pytest.raises(InputError, match=match):
        run_tiled(np.zeros((1, 20, 20)), identity, tile=tile, overlap=overlap)


def test_overlap_checked_against_the_tile_even_on_a_small_image():
    # The image is smaller than the tile, but overlap >= tile is still a caller error.
    with pytest.raises(InputError, match="overlap"):
        tile_grid(3, 3, 8, 8)


# ---------------------------------------------------------------------------------------
# blending weights


def test_blend_window_positive_and_one_at_the_border():
    w = blend_window(12, 9, 4, at_top=True, at_left=True)
    assert w.dtype == np.float32 and w.shape == (12, 9)
    assert (w > 0).all() and (w <= 1).all()
    assert (w[:8, :5] == 1).all()  # no ramp towards the top and left borders
    assert (np.diff(w[-4:, 0]) < 0).all() and (np.diff(w[0, -4:]) < 0).all()
    w = blend_window(12, 9, 4)
    assert (w[4:8, 4:5] == 1).all() and w[0, 0] == w.min() > 0
    np.testing.assert_allclose(w, w[::-1, ::-1])  # symmetric ramps
    everywhere = dict(at_top=True, at_bottom=True, at_left=True, at_right=True)
    assert (blend_window(5, 7, 3, **everywhere) == 1).all()


@pytest.mark.parametrize("n", [1, 2, 3, 8, 31])
def test_blend_window_partition_of_unity(n):
    # Two neighbours sharing n pixels: the falling ramp of one and the rising ramp of the
    # other sum to 1 there (raised cosine: sin^2 + cos^2).
    left = blend_window(1, 40, (0, 0, 0, n), at_top=True, at_bottom=True, at_left=True)[0]
    right = blend_window(1, 40, (0, 0, n, 0), at_top=True, at_bottom=True, at_right=True)[0]
    np.testing.assert_allclose(left[40 - n :] + right[:n], 1, rtol=0, atol=1e-6)
    assert (left > 0).all() and (right > 0).all()


def test_blend_window_ramps_longer_than_half_the_tile_stay_positive():
    w = blend_window(3, 5, (3, 3, 5, 5))  # rising and falling ramps overlap
    assert (w > 0).all() and w.max() < 1
    assert (blend_window(1, 1, 0) == 1).all() and (blend_window(1, 1, 9) > 0).all()
    with pytest.raises(InputError, match="overlap"):
        blend_window(4, 4, (1, 2))
    with pytest.raises(InputError, match="overlap must be >= 0"):
        blend_window(4, 4, -1)


# ---------------------------------------------------------------------------------------
# exactness


@settings(max_examples=150, deadline=None)
@given(
    geometries(),
    st.integers(1, 3),
    st.sampled_from(DTYPES),
    st.integers(0, 2**32 - 1),
)
def test_identity_returns_the_input_exactly(geometry, bands, dtype, seed):
    height, width, tile, overlap = geometry
    cube = random_cube(np.random.default_rng(seed), (bands, height, width), dtype)
    res = run_tiled(cube, identity, tile=tile, overlap=overlap)
    assert res.dtype == np.float32 and res.shape == cube.shape
    assert np.array_equal(res, cube.astype(np.float32))


@pytest.mark.parametrize("tile", range(1, 8))
def test_tiny_tiles_every_overlap_identity_and_offset_exact(rng, tile):
    cube = random_cube(rng, (2, 13, 11))
    for overlap in range(tile):
        assert np.array_equal(run_tiled(cube, identity, tile=tile, overlap=overlap), cube)
        res = run_tiled(cube, lambda x: x + 1, tile=tile, overlap=overlap)
        assert np.array_equal(res, cube + np.float32(1))


@settings(max_examples=60, deadline=None)
@given(geometries(), st.integers(0, 2**32 - 1))
def test_constant_offset_is_exact(geometry, seed):
    height, width, tile, overlap = geometry
    cube = random_cube(np.random.default_rng(seed), (2, height, width), np.float64)
    res = run_tiled(cube, lambda x: x + 1, tile=tile, overlap=overlap)
    assert np.array_equal(res, cube.astype(np.float32) + np.float32(1))


@pytest.mark.parametrize(("shape", "tile"), [((3, 9, 7), 16), ((3, 9, 7), (9, 7)), ((1, 5, 5), 5)])
def test_single_tile_is_fn_of_the_whole_image_bitwise(rng, shape, tile):
    cube = random_cube(rng, shape, np.float64)
    cube[0, 0, :] = 0.0  # with fn below, -0.0 appears: checks bits, not only values

    def fn(x):
        return np.tanh(3 * box3(x)) * -np.abs(x)

    res = run_tiled(cube, fn, tile=tile, overlap=min(pair(tile)) - 1)
    expected = fn(cube.astype(np.float32))
    assert np.signbit(expected).any() and (expected == 0).any()
    assert res.tobytes() == expected.astype(np.float32).tobytes()


@settings(max_examples=40, deadline=None)
@given(geometries(max_side=30, max_tile=12), st.integers(0, 2**32 - 1))
def test_result_is_the_weighted_mean_of_the_tiles(geometry, seed):
    # A fn that differs per tile (scale by the tile's number) against a float64
    # reference sum(w * tile) / sum(w), weights from blend_window over shared pixels.
    height, width, tile, overlap = geometry
    cube = random_cube(np.random.default_rng(seed), (2, height, width))
    calls = []

    def fn(x):
        calls.append(len(calls))
        return x * (1 + len(calls))

    res = run_tiled(cube, fn, tile=tile, overlap=overlap)
    tiles = tile_grid(height, width, tile, overlap)
    ys = sorted({t.y0 for t in tiles})
    xs = sorted({t.x0 for t in tiles})
    acc = np.zeros(cube.shape)
    wsum = np.zeros(cube.shape[1:])
    for k, t in enumerate(tiles):
        th, tw = t.shape
        i, j = ys.index(t.y0), xs.index(t.x0)
        top = ys[i - 1] + th - t.y0 if i > 0 else 0
        bottom = t.y1 - ys[i + 1] if i + 1 < len(ys) else 0
        left = xs[j - 1] + tw - t.x0 if j > 0 else 0
        right = t.x1 - xs[j + 1] if j + 1 < len(xs) else 0
        w = blend_window(th, tw, (top, bottom, left, right)).astype(np.float64)
        acc[:, t.y0 : t.y1, t.x0 : t.x1] += w * cube[:, t.y0 : t.y1, t.x0 : t.x1] * (k + 2)
        wsum[t.y0 : t.y1, t.x0 : t.x1] += w
    assert len(calls) == len(tiles)
    np.testing.assert_allclose(res, acc / wsum, rtol=2e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------
# seams


SEAM_H, SEAM_W, SEAM_TILE, SEAM_OVERLAP = 100, 100, 32, 8


def seam_jumps(out: np.ndarray) -> tuple[float, float, float]:
    """Max jump next to interior tile edges, max jump elsewhere, median jump.

    Jumps are absolute differences of neighbouring pixels (both directions), measured
    2 pixels away from the image border (where a zero-padded blur is wrong anyway).
    """
    tiles = tile_grid(SEAM_H, SEAM_W, SEAM_TILE, SEAM_OVERLAP)
    rows = {t.y0 for t in tiles if t.y0 > 0} | {t.y1 - 1 for t in tiles if t.y1 < SEAM_H}
    cols = {t.x0 for t in tiles if t.x0 > 0} | {t.x1 - 1 for t in tiles if t.x1 < SEAM_W}
    m = 2
    gy = np.abs(np.diff(out, axis=1))[:, m:-m, m:-m]  # gy[:, k] is rows k+m -> k+m+1
    gx = np.abs(np.diff(out, axis=2))[:, m:-m, m:-m]
    at_y = np.zeros(gy.shape[1], bool)
    at_y[[r - d - m for r in rows for d in (0, 1) if 0 <= r - d - m < at_y.size]] = True
    at_x = np.zeros(gx.shape[2], bool)
    at_x[[c - d - m for c in cols for d in (0, 1) if 0 <= c - d - m < at_x.size]] = True
    seam = max(gy[:, at_y].max(), gx[:, :, at_x].max())
    other = max(gy[:, ~at_y].max(), gx[:, :, ~at_x].max())
    median = np.median(np.concatenate([gy.ravel(), gx.ravel()]))
    return float(seam), float(other), float(median)


@pytest.fixture
def smooth_cube() -> np.ndarray:
    yy, xx = np.mgrid[0:SEAM_H, 0:SEAM_W].astype(np.float64)
    return np.stack(
        [
            0.5 + 0.3 * np.sin(2 * np.pi * yy / 70 + 0.3) * np.cos(2 * np.pi * xx / 55),
            0.4 + 0.2 * np.cos(2 * np.pi * (xx + yy) / 90),
        ]
    ).astype(np.float32)


def assert_seam_free(out: np.ndarray, reference: np.ndarray) -> None:
    seam, other, median = seam_jumps(out)
    assert seam <= 1.25 * other, (seam, other)
    assert seam <= 5 * median, (seam, median)
    assert np.abs(out - reference)[:, 2:-2, 2:-2].max() < 0.01


def test_blending_hides_tile_edge_errors(smooth_cube):
    # box3 per tile is wrong on each tile's edge pixels (zero padding, up to 1/3 of the
    # value); the blended output has no visible seam and matches the whole-image blur.
    out = run_tiled(smooth_cube, box3, tile=SEAM_TILE, overlap=SEAM_OVERLAP)
    assert_seam_free(out, box3(smooth_cube))


@pytest.mark.parametrize("variant", ["uniform weights", "last tile wins"])
def test_seam_check_fails_without_blending(smooth_cube, monkeypatch, variant):
    # The check above has teeth: with hard cuts (last tile overwrites) or flat weights
    # (plain average over overlaps) the same run shows seams.
    if variant == "uniform weights":
        monkeypatch.setattr(tiling, "blend_window", lambda h, w, o, **_: np.ones((h, w), "f4"))
    else:

        def overwrite(current, weight_sum, result, weights):
            weight_sum += weights
            current[...] = result

        monkeypatch.setattr(tiling, "_accumulate", overwrite)
    out = run_tiled(smooth_cube, box3, tile=SEAM_TILE, overlap=SEAM_OVERLAP)
    with pytest.raises(AssertionError):
        assert_seam_free(out, box3(smooth_cube))


# ---------------------------------------------------------------------------------------
# transform, out, inputs, memory


def test_transform_is_applied_per_tile_in_the_cube_dtype(rng):
    cube = random_cube(rng, (3, 20, 17), np.uint16)
    lo, hi = float(cube.min()), float(cube.max())
    seen = []

    def normalise(x):
        seen.append((x.dtype, x.shape))
        x[...] = 0  # a transform working in place must not reach the cube
        return x

    before = cube.copy()
    run_tiled(cube, identity, tile=8, overlap=3, transform=normalise)
    assert np.array_equal(cube, before)
    assert len(seen) == len(tile_grid(20, 17, 8, 3))
    assert all(dtype == np.uint16 and shape == (3, 8, 8) for dtype, shape in seen)

    res = run_tiled(cube, identity, tile=8, overlap=3, transform=lambda x: (x - lo) / (hi - lo))
    assert np.array_equal(res, ((cube - lo) / (hi - lo)).astype(np.float32))
    assert res.min() == 0 and res.max() == 1


def test_fn_gets_float32_contiguous_tiles_and_may_work_in_place(rng):
    cube = random_cube(rng, (2, 15, 15), np.float64)
    before = cube.copy()

    def fn(x):
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (2, 6, 6)
        x *= 2
        return x

    res = run_tiled(cube, fn, tile=6, overlap=2)
    assert np.array_equal(cube, before)
    assert np.array_equal(res, 2 * cube.astype(np.float32))


def test_out_is_reused_and_normalised_in_place(rng):
    cube = random_cube(rng, (2, 19, 23))
    out = np.full(cube.shape, np.nan, dtype=np.float32)  # garbage is ignored
    res = run_tiled(cube, identity, tile=7, overlap=3, out=out)
    assert res is out and np.array_equal(out, cube)
    res = run_tiled(cube, lambda x: x * 3, tile=(5, 9), overlap=2, out=out)
    assert res is out and np.array_equal(out, cube * np.float32(3))


def test_memmap_cube_and_out(rng, tmp_path):
    data = random_cube(rng, (3, 30, 25), np.uint16)
    cube = np.lib.format.open_memmap(tmp_path / "cube.npy", "w+", np.uint16, data.shape)
    cube[...] = data
    cube.flush()
    cube = np.load(tmp_path / "cube.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "out.npy", "w+", np.float32, data.shape)
    res = run_tiled(cube, lambda x: x + 1, tile=12, overlap=4, out=out)
    assert res is out
    out.flush()
    assert np.array_equal(np.load(tmp_path / "out.npy"), data.astype(np.float32) + 1)


class SliceOnly:
    """An h5py-like dataset: shape, dtype and slicing (returning copies), nothing else."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads: list[tuple[int, int, int]] = []

    def __getitem__(self, key):
        part = self._data[key].copy()
        self.reads.append(part.shape)
        return part


def test_h5py_like_cube_is_read_one_window_at_a_time(rng):
    data = random_cube(rng, (4, 33, 21), np.float64)
    cube = SliceOnly(data)
    res = run_tiled(cube, identity, tile=10, overlap=4)
    assert np.array_equal(res, data.astype(np.float32))
    assert set(cube.reads) == {(4, 10, 10)}
    assert len(cube.reads) == len(tile_grid(33, 21, 10, 4))


def test_peak_memory_is_tile_sized_plus_one_plane(rng):
    bands, size, tile = 8, 256, 32
    cube = random_cube(rng, (bands, size, size))
    out = np.empty_like(cube)
    tracemalloc.start()
    try:
        run_tiled(cube, box3, tile=tile, overlap=8, out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    plane = size * size * 4  # the float32 weight sum
    per_tile = bands * tile * tile * 4
    assert peak < plane + 10 * per_tile, (peak, plane, per_tile)
    assert peak < out.nbytes / 3  # no second full-size array


# ---------------------------------------------------------------------------------------
# errors and progress


def test_input_errors(rng):
    cube = random_cube(rng, (2, 10, 10))
    with pytest.raises(InputError, match=r"\(bands, H, W\).*\(10, 10\)"):
        run_tiled(cube[0], identity, tile=4, overlap=1)
    with pytest.raises(InputError, match="empty"):
        run_tiled(np.zeros((2, 0, 10)), identity, tile=4, overlap=1)
    with pytest.raises(InputError, match=r"float32 array of shape \(2, 10, 10\), got float64"):
        run_tiled(cube, identity, tile=4, overlap=1, out=np.zeros(cube.shape))
    with pytest.raises(InputError, match=r"got float32 \(2, 10, 9\)"):
        run_tiled(cube, identity, tile=4, overlap=1, out=np.zeros((2, 10, 9), np.float32))
    with pytest.raises(InputError, match="share memory"):
        run_tiled(cube, identity, tile=4, overlap=1, out=cube)
    with pytest.raises(InputError, match=r"fn returned shape \(2, 3, 4\)"):
        run_tiled(cube, lambda x: x[:, 1:], tile=4, overlap=1)


def test_fn_errors_propagate(rng):
    class Boom(RuntimeError):
        pass

    calls = []

    def fn(x):
        calls.append(1)
        if len(calls) == 3:
            raise Boom("tile 3")
        return x

    with pytest.raises(Boom, match="tile 3"):
        run_tiled(random_cube(rng, (1, 20, 20)), fn, tile=8, overlap=2, progress=True)


def test_progress_bar(rng, capsys):
    cube = random_cube(rng, (1, 12, 12))
    run_tiled(cube, identity, tile=4, overlap=0)
    assert capsys.readouterr().err == ""
    run_tiled(cube, identity, tile=4, overlap=0, progress=True)
    err = capsys.readouterr().err
    assert "tiles" in err and "9/9" in err
    run_tiled(cube, identity, tile=4, overlap=0, progress={"desc": "denoising", "leave": True})
    assert "denoising" in capsys.readouterr().err
    run_tiled(cube, identity, tile=4, overlap=0, progress={"disable": True})
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------
# memory budget


def budget_cost(side: int, bands: int, per: float, fixed: int) -> float:
    return bands * per * side * side + fixed  # same rounding as tile_for_budget


@given(
    st.integers(1, 300),
    st.floats(0.5, 5000),
    st.integers(0, 2**36),
    st.integers(0, 2**30),
    st.integers(1, 64),
    st.integers(1, 32),
)
def test_tile_for_budget_respects_the_budget(bands, per, budget, fixed, min_tile, multiple):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        side = tile_for_budget(
            bands, per, budget, fixed_bytes=fixed, min_tile=min_tile, multiple=multiple
        )
    fits = budget_cost(min_tile, bands, per, fixed) <= budget
    assert bool(caught) == (not fits)
    if caught:
        assert side == min_tile
        assert "over the budget" in str(caught[0].message)
    elif side == min_tile and side % multiple:  # min_tile fits, no multiple from it up
        assert budget_cost(-(-min_tile // multiple) * multiple, bands, per, fixed) > budget
    else:
        assert side >= min_tile and side % multiple == 0
        assert budget_cost(side, bands, per, fixed) <= budget
        assert budget_cost(side + multiple, bands, per, fixed) > budget  # the largest


@given(
    st.integers(1, 200),
    st.floats(1, 1000),
    st.lists(st.integers(0, 2**34), min_size=2, max_size=8),
    st.integers(0, 2**24),
)
def test_tile_for_budget_is_monotone_in_the_budget(bands, per, budgets, fixed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sides = [tile_for_budget(bands, per, b, fixed_bytes=fixed) for b in sorted(budgets)]
    assert sides == sorted(sides)


def test_tile_for_budget_examples_and_errors():
    assert tile_for_budget(31, 4.0, 31 * 4 * 100 * 100) == 96
    assert tile_for_budget(31, 4.0, 31 * 4 * 100 * 100, multiple=1) == 100
    assert tile_for_budget(1, 1.0, 64 * 64 + 1000, fixed_bytes=1000) == 64
    with pytest.warns(UserWarning, match="a 32 x 32 tile needs"):
        assert tile_for_budget(31, 4.0, 1000) == 32
    with pytest.warns(UserWarning):
        assert tile_for_budget(1, 1.0, 10**6, fixed_bytes=10**7) == 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 30 fits, no multiple of 8 from 30 up does
        assert tile_for_budget(1, 1.0, 31 * 31, min_tile=30) == 30
    with pytest.raises(InputError, match="bytes_per_pixel_band"):
        tile_for_budget(31, 0.0, 10**9)
    with pytest.raises(InputError, match="bands"):
        tile_for_budget(0, 4.0, 10**9)


@pytest.mark.parametrize("length", [33, 100, 257, 512, 1000, 2048])
@pytest.mark.parametrize("tile,overlap", [(64, 16), (120, 32), (448, 32)])
def test_balanced_tile_keeps_the_tile_count_and_wastes_less(length, tile, overlap):
    side, _ = balanced_tile(length, 1, tile, overlap)
    assert side <= min(tile, length)
    before = tile_grid(length, 1, tile, overlap)
    after = tile_grid(length, 1, side, overlap)
    assert len(after) == len(before)
    covered = np.zeros(length, bool)
    for t in after:
        covered[t.y0 : t.y1] = True
    assert covered.all()
    assert len(after) * side <= len(before) * min(tile, length)
    if len(after) > 1:  # only the overlap strips are computed twice (up to rounding)
        assert len(after) * side - length < len(after) * (overlap + 1)


def test_balanced_tile_at_512_computes_far_less_than_the_largest_tile():
    assert balanced_tile(512, 512, 448, 32) == (272, 272)
    assert balanced_tile(200, 512, 448, 32) == (200, 272)


# --------------------------------------------------------------- band windows


def test_band_windows_cover_every_band_and_end_at_the_last():
    from ras2s.tiling import band_window_starts

    for bands, window, overlap in [(189, 31, 8), (40, 31, 8), (32, 31, 0), (10, 3, 1)]:
        starts = band_window_starts(bands, window, overlap)
        covered = np.zeros(bands, bool)
        for s in starts:
            covered[s : s + window] = True
        assert covered.all() and starts[0] == 0 and starts[-1] + window == bands
        assert all(b - a <= window - overlap for a, b in zip(starts[:-1], starts[1:], strict=True))
    assert band_window_starts(31, 31, 8) == [0] and band_window_starts(12, 31, 8) == [0]
    with pytest.raises(InputError, match="smaller than the window"):
        band_window_starts(50, 8, 8)


def test_run_band_windows_is_exact_for_band_wise_maps_and_blends_otherwise():
    from ras2s.tiling import run_band_windows

    rng = np.random.default_rng(3)
    tile = rng.random((70, 5, 6)).astype(np.float32)
    calls = []

    def affine(x):
        calls.append(x.shape[0])
        return 2 * x + 1

    out = run_band_windows(affine, tile, 31, 8)
    np.testing.assert_allclose(out, 2 * tile + 1, rtol=1e-6)
    assert out.dtype == np.float32 and set(calls) == {31}
    # a map that depends on the window (its mean) gives each band a blend of windows
    out = run_band_windows(lambda x: np.full_like(x, x.mean()), tile, 31, 8)
    means = [tile[s : s + 31].mean() for s in (0, 23, 39)]
    assert out[0, 0, 0] == pytest.approx(means[0], rel=1e-6)  # only the first window
    assert out[-1, 0, 0] == pytest.approx(means[-1], rel=1e-6)  # only the last
    shared = out[23:31, 0, 0]  # first and second windows: a convex blend of the two
    assert np.all(shared >= min(means[:2]) - 1e-6) and np.all(shared <= max(means[:2]) + 1e-6)
    # at most `window` bands: fn on the whole tile, untouched
    short = tile[:31]
    assert np.array_equal(run_band_windows(lambda x: x * 3, short, 31, 8), short * 3)
