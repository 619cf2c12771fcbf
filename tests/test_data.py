"""Patch geometry, the patch store written by prepare, datasets and augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ras2s.data import (
    EpochSampler,
    MixedBatchSampler,
    PatchDataset,
    PrepareConfig,
    augment,
    extract_patches,
    patch_count,
    prepare,
)
from ras2s.data.prepare import band_windows
from ras2s.errors import InputError, OutputError

PAPER = dict(patch=64, scales=(1, 0.5, 0.25), strides=(64, 32, 32))


def test_patch_count_reproduces_the_paper():
    # 1024/64 = 16 -> 256; 512 px at stride 32 -> 15 x 15 = 225; 256 px -> 7 x 7 = 49
    assert patch_count(1024, 1024, **PAPER) == 256 + 225 + 49 == 530
    assert 100 * patch_count(1024, 1024, **PAPER) == 53_000


def test_patch_count_small_and_degenerate_cases():
    assert patch_count(64, 64, 64, (1,), (64,)) == 1
    assert patch_count(63, 200, 64, (1,), (64,)) == 0  # too small: no patch, no error
    assert patch_count(100, 100, 32, (1, 0.5, 0.25), (16, 16, 16)) == 25 + 4 + 0
    with pytest.raises(InputError, match="one stride per scale"):
        patch_count(64, 64, 32, (1, 0.5), (32,))


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(8, 40),
    w=st.integers(8, 40),
    patch=st.integers(4, 12),
    stride=st.integers(1, 9),
    half=st.booleans(),
)
def test_extract_patches_matches_patch_count(h, w, patch, stride, half):
    scales = (1.0, 0.5) if half else (1.0,)
    strides = (stride, stride) if half else (stride,)
    cube = np.random.default_rng(0).random((2, h, w)).astype(np.float32)
    out = extract_patches(cube, patch, scales, strides)
    assert out.shape == (patch_count(h, w, patch, scales, strides), 2, patch, patch)
    if out.shape[0]:
        np.testing.assert_array_equal(out[0], cube[:, :patch, :patch])


def _write_cubes(folder, shapes, rng):
    folder.mkdir(parents=True, exist_ok=True)
    for name, shape in shapes.items():
        np.save(folder / f"{name}.npy", (rng.random(shape) * 1000).astype(np.uint16))


# 24 px: 9 + 4 patches
SMALL = dict(crop=24, patch=8, scales=(1.0, 0.5), strides=(8, 4), layout="BHW")


def test_prepare_writes_manifest_counts_and_normalised_patches(tmp_path, rng):
    _write_cubes(tmp_path / "src", {"a": (6, 30, 28), "b": (6, 20, 20), "c": (6, 24, 24)}, rng)
    m = prepare(tmp_path / "src", tmp_path / "out", PrepareConfig(**SMALL, val_list=("c",)))
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    per = {i["file"]: i for i in m["images"]}
    assert per["a.npy"]["crop"] == [24, 24]  # centre crop to 24
    assert per["b.npy"]["crop"] == [20, 20]  # smaller than crop: whole image, recorded
    assert per["a.npy"]["count"] == patch_count(24, 24, 8, (1, 0.5), (8, 4)) == 13
    assert per["b.npy"]["count"] == patch_count(20, 20, 8, (1, 0.5), (8, 4))
    assert m["counts"] == {"train": 13 + per["b.npy"]["count"], "val": 13}
    assert all(len(s["sha256"]) == 64 for s in m["sources"])
    assert m["scales"] == [1.0, 0.5] and m["strides"] == [8, 4] and m["seed"] == 0
    train = np.load(tmp_path / "out" / "train.npy", mmap_mode="r")
    assert isinstance(train, np.memmap) and train.dtype == np.float32
    assert train.shape == (m["counts"]["train"], 6, 8, 8)
    # scale-1 patches of a normalised cube lie in [0, 1] (cubic resampling may overshoot)
    assert 0 <= train[:9].min() and train[:9].max() <= 1
    with pytest.raises(OutputError, match="--force"):
        prepare(tmp_path / "src", tmp_path / "out", PrepareConfig(**SMALL))


def test_band_rule_error_names_files_and_counts(tmp_path, rng):
    _write_cubes(tmp_path / "src", {"a31": (31, 16, 16), "b17": (17, 16, 16)}, rng)
    with pytest.raises(InputError, match=r"a31\.npy: 31.*b17\.npy: 17"):
        prepare(tmp_path / "src", tmp_path / "out", PrepareConfig(**SMALL))
    with pytest.raises(InputError, match="b17.npy: 17 bands, fewer than --bands 20"):
        prepare(
            tmp_path / "src", tmp_path / "o2", PrepareConfig(**SMALL, bands=20, band_rule="select")
        )
    m = prepare(
        tmp_path / "src", tmp_path / "o3", PrepareConfig(**SMALL, bands=9, band_rule="select")
    )
    assert m["bands"] == 9 and np.load(tmp_path / "o3" / "train.npy").shape[1] == 9


def test_band_windows_and_select():
    assert band_windows(31, 31, "window", "x") == [list(range(31))]
    wins = band_windows(70, 31, "window", "x")  # ceil(70/31) = 3 windows, evenly spread
    assert [w[0] for w in wins] == [0, 20, 39] and all(len(w) == 31 for w in wins)
    assert band_windows(5, 3, "select", "x") == [[0, 2, 4]]
    with pytest.raises(InputError, match="needs --bands"):
        PrepareConfig(band_rule="window")


def test_split_is_by_image_never_by_patch(tmp_path, rng):
    shapes = {f"img{k}": (4, 16, 16) for k in range(5)}
    _write_cubes(tmp_path / "src", shapes, rng)
    m = prepare(
        tmp_path / "src",
        tmp_path / "out",
        PrepareConfig(**{**SMALL, "crop": None}, val_images=2, seed=3),
    )
    splits = {}
    for i in m["images"]:
        splits.setdefault(i["file"], set()).add(i["split"])
    assert all(len(s) == 1 for s in splits.values())
    val = {f for f, s in splits.items() if s == {"val"}}
    assert len(val) == 2
    assert m["counts"]["val"] == sum(i["count"] for i in m["images"] if i["split"] == "val")
    # the val patches are exactly the patches of the val images, in order
    val_patches = np.load(tmp_path / "out" / "val.npy")
    first = next(i for i in m["images"] if i["split"] == "val")
    cube = np.load(tmp_path / "src" / first["file"]).astype(np.float64)
    cube = ((cube - cube.min()) / (cube.max() - cube.min())).astype(np.float32)
    np.testing.assert_allclose(val_patches[0], cube[:, :8, :8], atol=1e-6)
    # windows of one file stay together
    m2 = prepare(
        tmp_path / "src",
        tmp_path / "o2",
        PrepareConfig(**{**SMALL, "crop": None}, bands=3, band_rule="window", val_list=("img1",)),
    )
    assert {i["split"] for i in m2["images"] if i["file"] == "img1.npy"} == {"val"}
    assert sum(i["file"] == "img1.npy" for i in m2["images"]) == 2


def test_val_list_unknown_name_is_an_error(tmp_path, rng):
    _write_cubes(tmp_path / "src", {"a": (4, 16, 16)}, rng)
    with pytest.raises(InputError, match="no cube named 'zzz'"):
        prepare(tmp_path / "src", tmp_path / "out", PrepareConfig(**SMALL, val_list=("zzz",)))


def test_augment_is_a_seeded_dihedral_transform(rng):
    patch = rng.random((5, 6, 6)).astype(np.float32)
    before = patch.copy()
    a = augment(patch, np.random.default_rng(7), spectral_flip=True)
    b = augment(patch, np.random.default_rng(7), spectral_flip=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(patch, before)  # input untouched
    assert a.flags.c_contiguous
    np.testing.assert_array_equal(np.sort(a, axis=None), np.sort(patch, axis=None))
    seen = {augment(patch, np.random.default_rng(s)).tobytes() for s in range(200)}
    assert len(seen) == 8  # the eight flips/rotations


def test_dataset_is_deterministic_per_epoch_and_index(tmp_path, rng):
    np.save(tmp_path / "p.npy", rng.random((6, 3, 4, 4)).astype(np.float32))
    ds = PatchDataset(tmp_path / "p.npy", augment=True, seed=1)
    assert len(ds) == 6 and ds[(0, 2)].shape == (3, 4, 4)
    assert ds[(3, 2)].equal(ds[(3, 2)])
    plain = PatchDataset(tmp_path / "p.npy")
    np.testing.assert_array_equal(plain[2].numpy(), np.load(tmp_path / "p.npy")[2])


def test_epoch_sampler_shards_and_reshuffles():
    full = [i for _, i in EpochSampler(10, seed=0)]
    assert sorted(full) == list(range(10))
    ranks = [list(EpochSampler(10, seed=0, num_replicas=3, rank=r)) for r in range(3)]
    assert all(len(r) == 4 for r in ranks)  # padded to equal length
    assert {i for r in ranks for _, i in r} == set(range(10))
    s = EpochSampler(10, seed=0)
    s.set_epoch(1)
    assert [i for _, i in s] != full and all(e == 1 for e, _ in s)


def _mixed(probs, *, rank=0, replicas=1, n=40, batch=4, sizes=(7, 5)):
    main = EpochSampler(n, seed=3, num_replicas=replicas, rank=rank)
    return MixedBatchSampler(main, batch, list(sizes), list(probs), seed=3, rank=rank)


def test_mixed_batches_come_from_one_store_each_and_keep_the_runs_order():
    mixed = _mixed([0.3, 0.2])
    batches = list(mixed)
    assert len(batches) == len(mixed) == 10
    assert batches == list(mixed)  # the same epoch draws the same batches
    own = [i for _, i in EpochSampler(40, seed=3)]
    stores = []
    for b, keys in enumerate(batches):
        store = {s for s, _, _ in keys}
        assert len(store) == 1 and len(keys) == 4
        stores.append(store.pop())
        if stores[-1] == 0:  # the run's own batch b, unchanged
            assert [i for _, _, i in keys] == own[4 * b : 4 * b + 4]
        else:  # samples of the mixed-in store, within its size
            assert all(0 <= i < (7, 5)[stores[-1] - 1] for _, _, i in keys)
    assert set(stores) == {0, 1, 2}
    # no mixing: exactly the plain sampler cut into batches
    plain = [[i for _, _, i in keys] for keys in _mixed([0.0, 0.0])]
    assert plain == [own[k : k + 4] for k in range(0, 40, 4)]


def test_mixed_store_share_follows_its_probability_and_is_the_same_on_every_rank():
    counts = np.zeros(3)
    for epoch in range(100):
        mixed = _mixed([0.25, 0.1], n=400)
        mixed.sampler.set_epoch(epoch)
        for keys in mixed:
            counts[keys[0][0]] += 1
    share = counts / counts.sum()  # 10,000 batches: binomial sd < 0.005
    np.testing.assert_allclose(share, [0.65, 0.25, 0.1], atol=0.02)
    ranks = [list(_mixed([0.5], rank=r, replicas=2, sizes=(9,))) for r in range(2)]
    assert [k[0][0] for k in ranks[0]] == [k[0][0] for k in ranks[1]]
    mixed_in = [(a, b) for a, b in zip(*ranks, strict=True) if a[0][0] == 1]
    assert mixed_in and any(a != b for a, b in mixed_in)  # each rank draws its own samples


@pytest.mark.parametrize(
    "probs, sizes",
    [([0.7, 0.4], (3, 3)), ([-0.1], (3,)), ([0.5], (0,)), ([0.5, 0.1], (3,))],
    ids=["sum-above-1", "negative", "empty-store", "count-mismatch"],
)
def test_mixed_batch_sampler_rejects_bad_mixes(probs, sizes):
    with pytest.raises(InputError):
        MixedBatchSampler(EpochSampler(8), 2, list(sizes), probs)
