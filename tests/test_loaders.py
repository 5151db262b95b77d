"""CSV loaders: the shipped data parse to the documented counts; malformed rows name the file and line."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefkit import load_baseball, load_llmfao, load_pairwise_csv
from prefkit.loaders import DATA_DIR


def test_baseball_counts():
    data = load_baseball()
    assert data.n_items == 7 and "Baltimore" in data.names
    assert data.weights.sum() == 273  # 21 pairs of teams × 13 games, over 42 (home, away) rows
    assert data.comparisons.shape == (len(data.weights), 2)
    # home wins are winner_first rows; Milwaukee at home beat Detroit 4 times (first data row)
    mil, det = data.index("Milwaukee"), data.index("Detroit")
    row = (data.comparisons[:, 0] == mil) & (data.comparisons[:, 1] == det) & data.winner_first
    assert data.weights[row].sum() == 4


def test_llmfao_counts_and_ties():
    data = load_llmfao()
    assert data.n_items == 59
    assert data.weights.sum() == pytest.approx(8931)
    half = data.weights == 0.5
    assert half.sum() == 2 * 3471  # each tie is two half-wins, one each way
    # ties are symmetric: the two halves swap winner and loser and flip winner_first
    a, b = data.comparisons[half][0::2], data.comparisons[half][1::2]
    np.testing.assert_array_equal(a, b[:, ::-1])
    assert np.all(data.winner_first[half][0::2] != data.winner_first[half][1::2])
    assert data.winner_first[data.weights == 1].sum() == 2911  # left wins


def _write(tmp_path, text, name="x.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "body, match",
    [
        ("left,right,winner\na,b,left\na,b,sideways\n", r"x\.csv, line 3: column 'winner' must be one of"),
        ("left,right,winner\na,b,left\n,b,right\n", r"x\.csv, line 3: empty item name"),
        ("left,right,winner\na,a,left\n", r"x\.csv, line 2: item 'a' is compared with itself"),
        ("left,right,winner\na,b\n", r"x\.csv, line 2: expected 3 fields"),
        ("left,right,winner\na,b,left,extra\n", r"x\.csv, line 2: expected 3 fields"),
        ("left,right\na,b\n", r"x\.csv, line 1: missing column"),
        ("left,right,winner\n", r"x\.csv: no comparisons"),
    ],
)
def test_pairwise_csv_errors_name_file_and_line(tmp_path, body, match):
    with pytest.raises(ValueError, match=match):
        load_pairwise_csv(_write(tmp_path, body))


@pytest.mark.parametrize(
    "body, match",
    [
        (
            "home.team,away.team,home.wins,away.wins\nA,B,3,1\nB,A,two,1\n",
            r"line 3: column 'home.wins' must be a number",
        ),
        (
            "home.team,away.team,home.wins,away.wins\nA,B,3,-1\n",
            r"line 2: column 'away.wins' must be a finite count",
        ),
        (
            "home.team,away.team,home.wins,away.wins\nA,B,3,nan\n",
            r"line 2: column 'away.wins' must be a finite count",
        ),
        ("home.team,away.team,home.wins,away.wins\nA,A,3,1\n", r"line 2: a team cannot play itself"),
    ],
)
def test_baseball_errors_name_file_and_line(tmp_path, body, match):
    with pytest.raises(ValueError, match=match):
        load_baseball(_write(tmp_path, body))


def test_names_map_to_ids_in_order_of_appearance(tmp_path):
    data = load_pairwise_csv(_write(tmp_path, "left,right,winner\nb,a,left\nc,b,tie\na,c,right\n"))
    assert data.names == ["b", "a", "c"]
    np.testing.assert_array_equal(data.comparisons, [[0, 1], [2, 0], [0, 2], [2, 1]])
    np.testing.assert_allclose(data.weights, [1, 0.5, 0.5, 1])
    np.testing.assert_array_equal(data.winner_first, [True, True, False, False])
    with pytest.raises(ValueError, match="no item called 'z'"):
        data.index("z")


def test_missing_file():
    with pytest.raises(ValueError, match="no such data file"):
        load_llmfao(DATA_DIR / "nope.csv")


_cell = st.one_of(
    st.sampled_from(["a", "b", "c", "left", "right", "tie", "", " ", "1", "-2", "nan", "x,y", '"q"']),
    st.text(max_size=5),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.lists(_cell, min_size=1, max_size=4), max_size=6), st.sampled_from(["pairwise", "baseball"])
)
def test_fuzz_loaders_parse_or_raise_value_error(tmp_path, rows, kind):
    """Any file content gives either a consistent PairwiseData or a ValueError that names the file."""
    import csv

    header = (
        ["left", "right", "winner"]
        if kind == "pairwise"
        else ["home.team", "away.team", "home.wins", "away.wins"]
    )
    path = tmp_path / "fuzz.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    try:
        data = load_pairwise_csv(path) if kind == "pairwise" else load_baseball(path)
    except ValueError as exc:
        assert "fuzz.csv" in str(exc)
        return
    assert data.comparisons.shape == (len(data.weights), 2)
    assert np.all(data.comparisons < data.n_items) and np.all(
        data.comparisons[:, 0] != data.comparisons[:, 1]
    )
    assert np.all(np.isfinite(data.weights)) and np.all(data.weights > 0)
