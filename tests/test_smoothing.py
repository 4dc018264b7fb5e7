"""selfattention.apps.smoothing: the smoother vs hand computation, baselines, figures, input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from selfattention.apps import smoothing as sm

FIXTURES = Path(__file__).parent / "fixtures"


def _by_hand(x, temperature, decay, lags, window, causal):
    """The module docstring's formula, written out with loops in float64."""
    n = len(x)
    step = np.std(np.diff(x))
    e = np.array([[x[max(i - k, 0)] for k in range(lags)] for i in range(n)]) / step
    y = np.zeros(n)
    for i in range(n):
        js = (
            range(max(0, i - window + 1), i + 1)
            if causal
            else range(max(0, i - window), min(n, i + window + 1))
        )
        s = []
        for j in js:
            content = -np.sum((e[i] - e[j]) ** 2) / (temperature * lags)
            if decay is None:
                pos = 0.0
            else:
                pos = -(i - j) / decay if causal else -(((i - j) / decay) ** 2)
            s.append(content + pos)
        w = np.exp(np.array(s) - max(s))
        w /= w.sum()
        y[i] = w @ x[list(js)]
    return y


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("decay", [None, 2.5])
def test_matches_the_formula(causal, decay):
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=37)) + 50
    got = sm.attention_smooth(x, temperature=3.0, decay=decay, lags=3, window=6, causal=causal)
    want = _by_hand(x, 3.0, decay, 3, 6, causal)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_weights_rows_are_causal_distributions():
    x = np.sin(np.arange(20) / 3.0)
    y, w = sm.attention_smooth(x, window=5, return_weights=True)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    assert np.all(np.triu(w, 1) == 0)  # nothing from the future
    assert np.all(np.tril(w, -5) == 0)  # nothing beyond the window
    np.testing.assert_allclose(w @ x, y, atol=1e-12)


def test_limits_are_the_baselines():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=50))
    # Infinite temperature and no position term: uniform weights over the window = moving average.
    flat = sm.attention_smooth(x, temperature=math.inf, decay=None, window=7)
    np.testing.assert_allclose(flat, sm.moving_average(x, 7), atol=1e-12)
    # Position term only, with a window longer than the series: weights ∝ exp(-(i-j)/ℓ), which is
    # an EMA with alpha = 1 - exp(-1/ℓ), renormalised over the available past.
    ell = 3.0
    pos = sm.attention_smooth(x, temperature=math.inf, decay=ell, window=None)
    r = math.exp(-1 / ell)
    i = 30
    w = r ** np.arange(i, -1, -1)
    assert pos[i] == pytest.approx(w @ x[: i + 1] / w.sum(), abs=1e-12)
    # A tiny temperature: each point attends to itself only.
    np.testing.assert_allclose(sm.attention_smooth(x, temperature=1e-9), x, atol=1e-9)


def test_constant_series_is_unchanged():
    x = np.full(10, 3.5)
    np.testing.assert_allclose(sm.attention_smooth(x), x)
    np.testing.assert_allclose(sm.exponential_moving_average(x, 0.3), x)


def test_baselines_by_hand():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_allclose(sm.moving_average(x, 2), [1.0, 1.5, 3.0, 6.0])
    np.testing.assert_allclose(sm.moving_average(x, 1, causal=False), [1.5, 7 / 3, 14 / 3, 6.0])
    np.testing.assert_allclose(sm.exponential_moving_average(x, 0.5), [1.0, 1.5, 2.75, 5.375])


def test_figures():
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(size=2000))
    assert sm.roughness(x, x) == 1.0
    assert sm.lag(x, x) == 0.0
    shifted = np.concatenate([np.full(4, x[0]), x[:-4]])  # y_t = x_{t-4}
    assert sm.lag(x, shifted) == pytest.approx(4.0, abs=0.05)
    assert sm.tracking_error(x, x + 2.0) == pytest.approx(2.0)
    # A moving average of n points on a random walk lags by about (n - 1) / 2.
    assert sm.lag(x, sm.moving_average(x, 9)) == pytest.approx(4.0, abs=0.6)
    reg = sm.by_regime(x, sm.moving_average(x, 5))
    assert reg["volatile"]["share"] == pytest.approx(0.1, abs=0.01)


def test_tradeoff_and_comparison():
    x = sm.load_series(FIXTURES / "series_tiny.csv", "Close").values
    rows = sm.tradeoff(x, window=30)
    methods = {r["method"] for r in rows}
    assert methods == {"moving average", "EMA", "attention", "attention, content only"}
    ema = [r for r in rows if r["method"] == "EMA"]
    assert ema[0]["roughness"] > ema[-1]["roughness"]  # the sweep goes from light to heavy
    table = sm.compare_at_roughness(rows, levels=(0.5,))
    assert {r["method"] for r in table} == methods
    assert all(r["lag"] is None or r["lag"] >= 0 for r in table)


def test_plot_writes_png(tmp_path):
    s = sm.load_series(FIXTURES / "series_tiny.csv", "Close")
    rows = [
        {"method": "EMA", "setting": "a", "roughness": 0.5, "lag": 1.0, "tracking_error": 1.0},
        {"method": "EMA", "setting": "b", "roughness": 0.3, "lag": 2.0, "tracking_error": 2.0},
    ]
    path = sm.plot(s, {"EMA (α=0.3)": s.values}, rows, tmp_path / "p.png", zoom=(10, 60))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_series_and_its_errors(tmp_path):
    s = sm.load_series(FIXTURES / "series_tiny.csv", "Close")
    assert len(s.values) == 300 and s.labels[0] == "2020-01-01"
    with pytest.raises(ValueError, match="no column 'Price'; columns: Date, Close, Volume"):
        sm.load_series(FIXTURES / "series_tiny.csv", "Price")
    with pytest.raises(ValueError, match=r"row 4, column 'Close' is not a number: '12\.5x'"):
        sm.load_series(FIXTURES / "series_bad.csv", "Close")
    with pytest.raises(ValueError, match="row 5, column 'Close' is missing"):
        sm.load_series(FIXTURES / "series_gaps.csv", "Close")
    dropped = sm.load_series(FIXTURES / "series_gaps.csv", "Close", missing="drop")
    assert len(dropped.values) == 9 and dropped.dropped == 2 and "2020-01-04" not in dropped.labels
    filled = sm.load_series(FIXTURES / "series_gaps.csv", "Close", missing="interpolate")
    assert len(filled.values) == 11 and np.isfinite(filled.values).all()
    assert filled.values[3] == pytest.approx((100.168 + 98.650) / 2)
    with pytest.raises(FileNotFoundError):
        sm.load_series(tmp_path / "none.csv", "Close")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        sm.load_series(tmp_path / "empty.csv", "Close")
    (tmp_path / "short.csv").write_text("a\n1\n")
    with pytest.raises(ValueError, match="need at least 3"):
        sm.load_series(tmp_path / "short.csv", "a")


def test_bad_arguments():
    with pytest.raises(ValueError, match="non-finite value at index 2"):
        sm.attention_smooth([1.0, 2.0, math.nan, 3.0])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sm.attention_smooth([1.0, 2.0, 3.0], temperature=0)
    with pytest.raises(ValueError, match="window"):
        sm.attention_smooth([1.0, 2.0, 3.0], window=0)
    with pytest.raises(ValueError, match="1-d"):
        sm.moving_average(np.zeros((2, 2)), 2)
    with pytest.raises(ValueError, match="alpha"):
        sm.exponential_moving_average([1.0, 2.0], 0.0)


def test_cli_on_a_csv(tmp_path, capsys):
    from selfattention.cli import main

    out = tmp_path / "out"
    assert (
        main(
            [
                "smooth",
                str(FIXTURES / "series_tiny.csv"),
                "--column",
                "Close",
                "--window",
                "30",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert {p.name for p in out.iterdir()} == {
        "smoothing.png",
        "smoothed.csv",
        "tradeoff.csv",
        "metrics.json",
    }
    assert "at equal roughness" in capsys.readouterr().out
    assert main(["smooth", str(FIXTURES / "series_gaps.csv"), "--column", "Close"]) == 1
    assert "--missing" in capsys.readouterr().err
    assert main(["smooth", str(FIXTURES / "series_tiny.csv"), "--column", "Nope"]) == 1
    assert "no column 'Nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# date order: the smoother is causal, so the rows must run oldest first


def _rewrite(tmp_path, name, order):
    """series_tiny.csv with its data rows reordered by ``order`` (a function of the rows)."""
    lines = (FIXTURES / "series_tiny.csv").read_text().splitlines()
    path = tmp_path / name
    path.write_text("\n".join([lines[0], *order(lines[1:])]) + "\n")
    return path


def test_descending_and_shuffled_dates_are_sorted_oldest_first(tmp_path):
    """Bug: a file listed newest first was smoothed in file order, so the causal smoother drew
    on the future."""
    want = sm.load_series(FIXTURES / "series_tiny.csv", "Close")
    assert want.order == sm.FILE_ORDER
    desc = sm.load_series(_rewrite(tmp_path, "desc.csv", lambda r: r[::-1]), "Close")
    perm = np.random.default_rng(0).permutation(len(want.values))
    shuffled = sm.load_series(
        _rewrite(tmp_path, "shuffled.csv", lambda r: [r[i] for i in perm]), "Close"
    )
    dates_in_file = [want.labels[i] for i in perm]  # the dates in file order; row 2 is the first
    for got in (desc, shuffled):
        np.testing.assert_array_equal(got.values, want.values)
        assert got.labels == want.labels and got.labels[0] == "2020-01-01"
        np.testing.assert_array_equal(
            sm.attention_smooth(got.values), sm.attention_smooth(want.values)
        )
    assert desc.order.startswith("sorted by date, oldest first") and "newest first" in desc.order
    assert "desc.csv" in desc.order
    first = next(k for k in range(1, 300) if dates_in_file[k] < dates_in_file[k - 1])
    assert f"shuffled.csv is out of order from row {first + 2} (" in shuffled.order


def test_duplicate_dates_are_refused(tmp_path):
    path = _rewrite(tmp_path, "dup.csv", lambda r: [*r[:5], r[3], *r[5:]])
    with pytest.raises(ValueError, match=r"dup\.csv: rows 5 and 7 have the same date '2020-01-04'"):
        sm.load_series(path, "Close")


def test_missing_values_are_interpolated_in_date_order(tmp_path):
    lines = (FIXTURES / "series_gaps.csv").read_text().splitlines()
    path = tmp_path / "gaps_desc.csv"
    path.write_text("\n".join([lines[0], *lines[1:][::-1]]) + "\n")
    want = sm.load_series(FIXTURES / "series_gaps.csv", "Close", missing="interpolate")
    got = sm.load_series(path, "Close", missing="interpolate")
    np.testing.assert_allclose(got.values, want.values)


def test_date_formats_and_labels_that_are_not_dates(tmp_path):
    assert sm.parse_dates(["2020-01-02", "2020-01-01T09:30"]) is not None
    us = sm.parse_dates(["01/31/2020", "02/01/2020"])
    assert us is not None and us[0] < us[1]
    assert sm.parse_dates(["31.01.2020", "01.02.2020"]) == sorted(
        sm.parse_dates(["31.01.2020", "01.02.2020"])
    )
    assert sm.parse_dates(["a", "b"]) is None and sm.parse_dates(["1", "2"]) is None
    with pytest.raises(ValueError, match="month/day and day/month"):
        sm.parse_dates(["01/02/2020", "02/01/2020"])
    path = tmp_path / "names.csv"
    path.write_text("name,v\nc,1\nb,2\na,3\n")
    s = sm.load_series(path, "v")
    assert s.order == sm.FILE_ORDER and list(s.values) == [1.0, 2.0, 3.0]


def test_config_names_the_bad_option():
    with pytest.raises(ValueError, match=r"window \(--window\) must be an integer >= 1, got 0"):
        sm.SmoothConfig(window=0)
    with pytest.raises(ValueError, match=r"temperature \(--temperature\) must be > 0, got -1"):
        sm.SmoothConfig(temperature=-1)
    with pytest.raises(ValueError, match=r"decay \(--decay\)"):
        sm.SmoothConfig(decay=0.0)
    with pytest.raises(ValueError, match=r"lags \(--lags\)"):
        sm.SmoothConfig(lags=1.5)
    assert sm.SmoothConfig(decay=None, temperature=math.inf).decay is None


def test_compare_against_the_baselines_at_equal_roughness():
    s = sm.load_series(FIXTURES / "series_tiny.csv", "Close")
    result = sm.compare(s, sm.SmoothConfig(window=30))
    att, ema, _ = result.chosen.values()
    r = sm.roughness(s.values, att)
    assert sm.roughness(s.values, ema) == pytest.approx(r, rel=1e-3)
    assert list(result.at_equal) == list(result.chosen) and result.settings["window"] == 30


def test_cli_descending_file_gives_the_ascending_result(tmp_path, capsys):
    from selfattention.cli import main

    desc = _rewrite(tmp_path, "desc.csv", lambda r: r[::-1])
    for name, path in (("asc", FIXTURES / "series_tiny.csv"), ("desc", desc)):
        argv = ["smooth", str(path), "-k", "Close", "--window", "30", "--out", str(tmp_path / name)]
        assert main(argv) == 0
    assert "rows sorted by date, oldest first" in capsys.readouterr().out
    smoothed = [(tmp_path / n / "smoothed.csv").read_text() for n in ("asc", "desc")]
    assert smoothed[0] == smoothed[1]
    assert "newest first" in (tmp_path / "desc" / "metrics.json").read_text()


def test_cli_demo_never_installs(monkeypatch, tmp_path, capsys):
    """Bug: `smooth --demo` pip-installed `arch`. Now: the data set is located or the command
    names `selfattention data fetch sp500`; nothing runs pip or apt-get."""
    import subprocess

    from selfattention.apps import datasets
    from selfattention.cli import main

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"smooth --demo started a process: {args}")

    for name in ("run", "call", "check_call", "check_output", "Popen"):
        monkeypatch.setattr(subprocess, name, no_subprocess)
    asked = []

    def require(name):
        asked.append(name)
        raise datasets.missing(name, "the package arch==8.0.0 is not installed")

    monkeypatch.setattr(datasets, "require", require)
    assert main(["smooth", "--demo", "--out", str(tmp_path)]) == 1
    assert asked == ["sp500"]
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sp500:") and err.endswith("selfattention data fetch sp500")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["nope.csv", "-k", "Close"], 1, "nope.csv does not exist"),
        ([str(FIXTURES / "series_tiny.csv")], 2, "--column is required"),
        ([str(FIXTURES / "series_tiny.csv"), "-k", "Close", "--window", "0"], 2, "--window"),
        ([str(FIXTURES / "series_tiny.csv"), "-k", "Close", "--decay", "-3"], 2, "--decay"),
        ([], 2, "give a CSV path and --column, or --demo"),
    ],
)
def test_cli_bad_input_is_one_line(argv, code, message, tmp_path, capsys):
    from selfattention.cli import main

    assert main(["smooth", *argv, "--out", str(tmp_path / "o")]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_cli_binary_file_is_one_line(tmp_path, capsys):
    from selfattention.cli import main

    (tmp_path / "prices.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "prices.csv.gz").write_bytes(b"not gzip")
    for name in ("prices.csv", "prices.csv.gz"):
        assert main(["smooth", str(tmp_path / name), "-k", "Close", "--out", str(tmp_path)]) == 1
        err = capsys.readouterr().err.strip()
        assert f"{name} is not a readable CSV text file" in err and "\n" not in err


def test_cli_out_at_a_file_fails_before_computing(tmp_path, capsys, monkeypatch):
    from selfattention.cli import main

    monkeypatch.setattr(sm, "compare", lambda *a: pytest.fail("computed before checking --out"))
    (tmp_path / "f").write_text("x")
    argv = [
        "smooth",
        str(FIXTURES / "series_tiny.csv"),
        "-k",
        "Close",
        "--out",
        str(tmp_path / "f"),
    ]
    assert main(argv) == 2
    assert "--out" in capsys.readouterr().err
