"""`ras2s noise`, `ras2s evaluate` and ras2s.evaluate: outputs, resume, failures, seeds."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import ras2s.inference as inference
from ras2s.cube import centre_box, centre_crop
from ras2s.errors import InputError
from ras2s.evaluate import (
    CROP_PRESETS,
    CSV_COLUMNS,
    evaluate,
    noise_seed,
    parse_bands,
    parse_crop,
    render_table,
)
from ras2s.io import read_cube, write_cube

from .conftest import DATA, OFFICIAL, csv_rows, need

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def runner():
    return CliRunner()


def _run(cubes, out, tiny_weights, **kwargs):
    options = dict(
        cases=["noniid", "iid30"],
        methods=["ras2s"],
        weights=tiny_weights,
        out_dir=out,
        progress=False,
    )
    options.update(kwargs)
    return evaluate([cubes], **options)


# ------------------------------------------------------------------------ ras2s noise


# --------------------------------------------------------------------- evaluate outputs
def test_evaluate_writes_three_outputs(tmp_path, cubes, tiny_weights):
    res = _run(cubes, tmp_path / "out", tiny_weights)
    rows = csv_rows(res.csv_path)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 2 * 2 * 2  # images x cases x (noisy + ras2s)
    assert {(r["image"], r["case"], r["method"]) for r in rows} == {
        (i, c, m)
        for i in ("alpha", "beta")
        for c in ("noniid", "iid30")
        for m in ("noisy", "ras2s")
    }
    assert [r["method"] for r in rows[:2]] == ["noisy", "ras2s"]  # noisy first
    for row in rows:
        assert all(math.isfinite(float(row[k])) for k in CSV_COLUMNS[3:])
        assert float(row["seconds"]) == 0 if row["method"] == "noisy" else float(row["seconds"]) > 0
    data = json.loads(res.json_path.read_text())
    assert data["weights"]["sha256"] and data["weights"]["parameters"] > 0
    assert data["weights"]["card"]["purpose"] == "tests"
    assert data["settings"]["seed"] == 0 and "sha256" in data["settings"]["seed_derivation"]
    assert set(data["metric_conventions"]) >= {"psnr", "ssim_paper", "ssim_gaussian", "sam"}
    assert data["versions"]["torch"] == torch.__version__ and data["finished"]
    beta = read_cube(cubes / "beta.mat").data
    assert data["images"]["beta"]["normalisation"] == {
        "lo": float(beta.min()),
        "hi": float(beta.max()),
    }
    params = data["noise"]["alpha"]["noniid"]
    assert params["seed"] == noise_seed(0, "alpha", "noniid") and len(params["sigma_per_band"]) == 6
    assert data["failures"] == [] and len(data["rows"]) == 8
    table = res.table_path.read_text()
    assert "SSIM convention: `paper`" in table
    assert "| Noisy |" in table and "| ras2s |" in table and "noniid PSNR↑" in table
    assert res.means[("iid30", "noisy")]["n"] == 2


def test_evaluate_gaussian50_and_case_validation(tmp_path, cubes, tiny_weights):
    res = _run(cubes, tmp_path / "g", tiny_weights, cases=["gaussian50"], methods=[])
    assert {r["case"] for r in res.rows} == {"gaussian50"}
    psnr = np.mean([r["psnr"] for r in res.rows])
    assert psnr == pytest.approx(20 * math.log10(255 / 50), abs=0.3)
    with pytest.raises(InputError, match="unknown noise case 'gauss'"):
        _run(cubes, tmp_path / "x", tiny_weights, cases=["gauss"])


def test_unknown_method_lists_available(tmp_path, cubes, tiny_weights, monkeypatch):
    fake = types.ModuleType("ras2s.baselines")
    fake.METHODS = {"tv": lambda x, *, sigma: x}
    monkeypatch.setitem(sys.modules, "ras2s.baselines", fake)
    with pytest.raises(InputError, match=r"unknown method\(s\) bm9d; available: ras2s.*tv"):
        _run(cubes, tmp_path / "x", tiny_weights, methods=["ras2s", "bm9d"])


def test_baselines_get_sigma_for_iid_only(tmp_path, cubes, tiny_weights, monkeypatch):
    seen = []

    def smooth(noisy01, *, sigma):
        seen.append(sigma)
        return noisy01 * 0.5 + 0.25

    fake = types.ModuleType("ras2s.baselines")
    fake.METHODS = {"smooth": smooth}
    monkeypatch.setitem(sys.modules, "ras2s.baselines", fake)
    res = _run(cubes, tmp_path / "b", tiny_weights, methods=["smooth"])
    assert sorted(seen, key=str) == sorted([None, 30 / 255] * 2, key=str)
    assert res.provenance["methods"]["smooth"]["kind"].startswith("baseline")
    assert res.provenance["weights"] is None  # no network needed


# ------------------------------------------------------------------------------ resume
def test_resume_skips_finished_work(tmp_path, cubes, tiny_weights, monkeypatch):
    calls = []
    real = inference.denoise

    def counting(noisy01, **kwargs):
        calls.append(noisy01.shape)
        return real(noisy01, **kwargs)

    monkeypatch.setattr(inference, "denoise", counting)
    out = tmp_path / "out"
    first = _run(cubes, out, tiny_weights)
    assert len(calls) == 4
    _run(cubes, out, tiny_weights)
    assert len(calls) == 4  # everything was done
    lines = first.csv_path.read_text().splitlines()
    dropped = next(i for i, line in enumerate(lines) if line.startswith("beta,iid30,ras2s,"))
    first.csv_path.write_text("\n".join(lines[:dropped] + lines[dropped + 1 :]) + "\n")
    again = _run(cubes, out, tiny_weights)
    assert len(calls) == 5  # only the deleted row was redone
    rows = csv_rows(again.csv_path)
    assert len(rows) == 8 and rows[-1]["image"] == "beta" and rows[-1]["method"] == "ras2s"
    redone = next(
        r for r in first.rows if (r["image"], r["case"], r["method"]) == ("beta", "iid30", "ras2s")
    )
    assert float(rows[-1]["psnr"]) == pytest.approx(redone["psnr"], abs=1e-8)
    assert json.loads(again.json_path.read_text())["noise"]["alpha"]["iid30"]  # kept
    assert len(again.provenance["runs"]) == 3
    fresh = _run(cubes, out, tiny_weights, resume=False)
    assert len(calls) == 9 and len(fresh.provenance["runs"]) == 1


def test_resume_refuses_other_settings(tmp_path, cubes, tiny_weights):
    out = tmp_path / "out"
    _run(cubes, out, tiny_weights, cases=["noniid"])
    with pytest.raises(InputError, match="seed=0"):
        _run(cubes, out, tiny_weights, cases=["noniid"], seed=1)
    with pytest.raises(InputError, match="crop"):
        _run(cubes, out, tiny_weights, cases=["noniid"], crop=16)
    with pytest.raises(InputError, match="band window None, not 3"):
        _run(cubes, out, tiny_weights, cases=["noniid"], band_window=3)
    assert json.loads((out / "results.json").read_text())["weights"]["band_window"] is None


def test_resume_refuses_results_of_another_normalisation(tmp_path, cubes, tiny_model):
    from ras2s.weights import save_weights

    weights = tmp_path / "percentile.pt"
    save_weights(tiny_model, weights, card={"inference": {"normalise": "percentile"}})
    out = tmp_path / "out"
    res = _run(cubes, out, weights, cases=["noniid"], methods=["ras2s-denoise"])
    assert res.provenance["weights"]["normalise"] == "percentile"
    assert res.provenance["methods"]["ras2s-denoise"]["normalise"] == "percentile"
    # results written before the normalisation was recorded were made with min-max
    saved = json.loads((out / "results.json").read_text())
    del saved["weights"]["normalise"]
    (out / "results.json").write_text(json.dumps(saved))
    with pytest.raises(InputError, match="normalisation minmax, not percentile"):
        _run(cubes, out, weights, cases=["noniid"], methods=["ras2s-denoise"])


# ---------------------------------------------------------------------------- failures


def test_corrupt_image_is_reported_and_others_continue(tmp_path, cubes, tiny_weights):
    (cubes / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    (cubes / "flat.npy").write_bytes(b"")
    write_cube(cubes / "const.npy", np.ones((4, 16, 16), np.float32))
    res = _run(cubes, tmp_path / "out", tiny_weights, cases=["noniid"])
    assert {r["image"] for r in res.rows} == {"alpha", "beta"}
    failed = {f["image"]: f for f in res.failures}
    assert set(failed) == {"broken", "flat", "const"}
    assert failed["const"]["stage"] == "prepare" and "constant" in failed["const"]["error"]
    assert json.loads(res.json_path.read_text())["failures"] == res.failures
    assert "Not scored" in res.table and "broken" in res.table


def test_method_failure_is_recorded(tmp_path, cubes, tiny_weights, monkeypatch):
    def explode(noisy01, **kwargs):
        if noisy01.shape[2] == 18:  # beta only
            raise RuntimeError("out of memory")
        return noisy01

    monkeypatch.setattr(inference, "denoise", explode)
    res = _run(cubes, tmp_path / "out", tiny_weights, cases=["noniid"])
    assert [(f["image"], f["method"], f["stage"]) for f in res.failures] == [
        ("beta", "ras2s", "method")
    ]
    assert "RuntimeError: out of memory" in res.failures[0]["error"]
    assert len(res.rows) == 3
    ras2s_line = next(line for line in res.table.splitlines() if line.startswith("| ras2s |"))
    assert ras2s_line.endswith("* |") and "fewer than 2 images" in res.table  # partial mean


# ------------------------------------------------------------------------------ table
def test_table_bolds_the_best():
    means = {
        ("mixture", "noisy"): {"psnr": 13.1, "ssim_paper": 0.35, "sam": 0.9, "seconds": 0, "n": 2},
        ("mixture", "a"): {"psnr": 30.0, "ssim_paper": 0.95, "sam": 0.2, "seconds": 1, "n": 2},
        ("mixture", "b"): {"psnr": 31.5, "ssim_paper": 0.90, "sam": 0.1, "seconds": 2, "n": 2},
    }
    table = render_table(means, ["mixture"], ["noisy", "a", "b"], n_images=2)
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if "|" in line}
    assert "| **31.50** | 0.9000 | **0.1000** |" in lines["b"]
    assert "| 30.00 | **0.9500** | 0.2000 |" in lines["a"]
    assert "**" not in lines["Noisy"]
    assert table.index("SSIM convention") < table.index("| Methods")
    means[("mixture", "a")]["psnr"] = 31.499  # a tie as printed: both bold
    tied = render_table(means, ["mixture"], ["noisy", "a", "b"])
    assert tied.count("**31.50**") == 2


# ------------------------------------------------------------------------------- seeds
def test_seed_derivation_is_pinned_and_order_free(tmp_path, cubes, tiny_weights):
    # pinned: sha256("ras2s-evaluate:0:cloth:mixture")[:8] >> 1
    assert noise_seed(0, "cloth", "mixture") == 7262538090450220455
    assert noise_seed(0, "cloth", "mixture") != noise_seed(0, "cloth", "stripe")
    assert noise_seed(0, "cloth", "mixture") != noise_seed(0, "cloth2", "mixture")
    a = _run(cubes, tmp_path / "a", tiny_weights, methods=[], cases=["stripe", "iid30"])
    b = evaluate(
        {"beta": cubes / "beta.mat", "alpha": cubes / "alpha.npy"},
        ["iid30", "stripe"],
        [],
        out_dir=tmp_path / "b",
        progress=False,
    )
    key = lambda r: (r["image"], r["case"])  # noqa: E731
    assert sorted(map(key, a.rows)) == sorted(map(key, b.rows))
    for ra, rb in zip(sorted(a.rows, key=key), sorted(b.rows, key=key), strict=True):
        assert ra["psnr"] == rb["psnr"] and ra["sam"] == rb["sam"]
    noise_a, noise_b = a.provenance["noise"], b.provenance["noise"]
    assert noise_a["beta"]["stripe"] == noise_b["beta"]["stripe"]


# -------------------------------------------------------------------- crop and bands
def test_crop_presets_and_parsing():
    assert CROP_PRESETS == {
        "icvl": 512,
        "cave": 512,
        "kaist": 2048,
        "pavia": 384,
        "wdc": 256,
        "urban": 224,
        "realhsi": 512,
    }
    for name, size in CROP_PRESETS.items():
        assert parse_crop(name) == (size, size) == parse_crop(name.upper())
    assert parse_crop(None) is None and parse_crop("none") is None
    assert parse_crop(64) == (64, 64) and parse_crop("64x48") == (64, 48)
    assert parse_crop((10, 12)) == (10, 12)
    with pytest.raises(InputError, match="preset"):
        parse_crop("icvl2")
    with pytest.raises(InputError):
        parse_crop(0)


def test_centre_crop_geometry():
    cube = np.arange(2 * 10 * 13).reshape(2, 10, 13)
    assert centre_box(cube.shape, (4, 5)) == (3, 4, 4, 5)
    assert np.array_equal(centre_crop(cube, (4, 5)), cube[:, 3:7, 4:9])
    whole = centre_crop(cube, (64, 6))  # larger than the image: that axis whole
    assert centre_box(cube.shape, (64, 6)) == (0, 3, 10, 6) and whole.shape == (2, 10, 6)
    assert centre_crop(cube, 4).shape == (2, 4, 4) and centre_crop(cube, None) is cube


def test_crop_and_bands_in_evaluate(tmp_path, cubes, tiny_weights):
    res = _run(
        cubes, tmp_path / "c", tiny_weights, methods=[], crop=12, bands="1:5", cases=["noniid"]
    )
    info = res.provenance["images"]["beta"]
    assert info["shape"] == [4, 12, 12] and info["bands"] == [1, 2, 3, 4]
    assert info["crop_box"] == {"top": 6, "left": 3, "height": 12, "width": 12}
    assert "crop 12x12, bands 1:5" in res.table


def test_parse_bands():
    assert parse_bands(None, 5) is None
    assert parse_bands("0:31", 40).tolist() == list(range(31))
    assert parse_bands("::2", 5).tolist() == [0, 2, 4]
    assert parse_bands([4, 0], 5).tolist() == [4, 0]
    with pytest.raises(InputError, match="outside"):
        parse_bands("0,9", 5)
    with pytest.raises(InputError, match="keeps no band"):
        parse_bands("7:9", 5)
    with pytest.raises(InputError, match="slice"):
        parse_bands("a-b", 5)


# ---------------------------------------------------------------------------------- CLI


# ----------------------------------------------------------------------------- real data
@pytest.mark.parametrize(
    "bands",
    [
        pytest.param("0:31", id="first-31-bands"),
        pytest.param(None, id="all", marks=pytest.mark.slow),
    ],
)
def test_real_data_official_weights(tmp_path, bands):
    data = need(DATA)
    weights = need(OFFICIAL)
    files = sorted(p for p in data.rglob("*.mat") if "JasperRidge" not in p.parts)  # Y is 2-D
    assert len(files) >= 10
    res = evaluate(
        files,
        ["noniid", "stripe"],
        ["ras2s"],
        weights=weights,
        crop=32,
        bands=bands,
        out_dir=tmp_path / "real",
        progress=False,
        key={"Samson": "SamSon"},
    )
    assert res.failures == []
    for path in (res.csv_path, res.json_path, res.table_path):
        assert path.is_file()
    rows = csv_rows(res.csv_path)
    assert len(rows) == len(files) * 2 * 2
    for row in rows:
        assert all(math.isfinite(float(row[k])) for k in CSV_COLUMNS[3:]), row
    for case in ("noniid", "stripe"):
        assert res.means[(case, "ras2s")]["psnr"] > res.means[(case, "noisy")]["psnr"] + 5
    assert res.provenance["weights"]["sha256"].startswith("eeae0f8f")


def test_the_denoise_methods_renormalise_the_noisy_cube_by_range_or_percentiles(
    tmp_path, cubes, tiny_weights
):
    from ras2s import denoise, load_model
    from ras2s.evaluate.methods import resolve_methods

    methods = ["ras2s-denoise", "ras2s-denoise-percentile", "ras2s-denoise-minmax"]
    res = _run(cubes, tmp_path / "out", tiny_weights, cases=["mixture"], methods=methods)
    assert {r["method"] for r in csv_rows(res.csv_path)} == {"noisy", *methods}
    assert "percentile" in res.provenance["methods"]["ras2s-denoise-percentile"]["kind"]
    # each is ras2s.denoise with its normalisation
    noisy = np.random.default_rng(3).random((6, 12, 12)).astype(np.float32)
    noisy[0, 0, 0] = 9.0  # an outlier that sets the maximum
    resolved, _, _ = resolve_methods(methods, tiny_weights, "cpu")
    model = load_model(tiny_weights)
    # weights without a card: auto is the estimated clean range
    for name, how in zip(methods, ("clean", "percentile", "minmax"), strict=True):
        expected = denoise(noisy, model=model, normalise=how)
        np.testing.assert_array_equal(resolved[name](noisy, {}), expected)
    outputs = [resolved[name](noisy, {}) for name in methods]
    assert not np.array_equal(outputs[0], outputs[1]) and not np.array_equal(outputs[0], outputs[2])
    clean, _, _ = resolve_methods(["ras2s-denoise-clean"], tiny_weights, "cpu")
    np.testing.assert_array_equal(clean["ras2s-denoise-clean"](noisy, {}), outputs[0])


def test_undefined_ergas_is_nan_in_csv_and_null_in_json(tmp_path, rng):
    cube = rng.random((4, 16, 16)).astype(np.float32) + 1
    cube[2] = 0  # a band at the global minimum: mean 0 after normalisation
    res = evaluate({"dark": cube}, ["noniid"], [], out_dir=tmp_path / "o", progress=False)
    assert csv_rows(res.csv_path)[0]["ergas"] == "nan"
    data = json.loads(res.json_path.read_text())  # strict JSON: no NaN literal
    assert data["rows"][0]["ergas"] is None and math.isfinite(data["rows"][0]["psnr"])
    assert data["images"]["dark"]["path"] is None and len(data["runs"]) == 1
