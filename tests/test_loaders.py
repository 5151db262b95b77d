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


# ---------------------------------------------------------------- file-level problems (issue 11 reproducers)
def _write_bytes(tmp_path, data, name="x.csv"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_utf8_bom_and_crlf_are_accepted(tmp_path):
    """Excel writes a BOM and CRLF; the BOM was read as part of the first column name ("missing column")."""
    body = "left,right,winner\r\na,b,left\r\nb,c,tie\r\n"
    plain = load_pairwise_csv(_write(tmp_path, "left,right,winner\na,b,left\nb,c,tie\n", "plain.csv"))
    for data in (body.encode("utf-8-sig"), body.encode("utf-8")):
        got = load_pairwise_csv(_write_bytes(tmp_path, data))
        assert got.names == plain.names
        np.testing.assert_array_equal(got.comparisons, plain.comparisons)
    base = load_baseball()
    text = (DATA_DIR / "baseball_agresti1987ALE.csv").read_text(encoding="utf-8")
    crlf = load_baseball(_write_bytes(tmp_path, text.replace("\n", "\r\n").encode("utf-8-sig"), "b.csv"))
    np.testing.assert_array_equal(crlf.comparisons, base.comparisons)


@pytest.mark.parametrize("body, line", [
    ("left,right,winner\n\na,b,left\n\n\na,b,sideways\n", 6),  # blank lines count
    ('left,right,winner\n"a\nwith newline",b,left\na,b,sideways\n', 4),  # a quoted newline counts
    ("\nleft,right,winner\na,b,sideways\n", 3),  # a blank line before the header
    ("left,right,winner\r\na,b,left\r\n\r\na,b,sideways\r\n", 4),  # CRLF
])
def test_line_numbers_are_physical_lines(tmp_path, body, line):
    """Reported line numbers counted records, not lines: wrong after a blank line or a quoted newline."""
    with pytest.raises(ValueError, match=rf"x\.csv, line {line}: column 'winner'"):
        load_pairwise_csv(_write_bytes(tmp_path, body.encode()))


@pytest.mark.parametrize("data, match", [
    (b"", r"x\.csv: the file is empty \(0 bytes\)"),
    ("left,right,winner\na,b,left\nb,\xe9,left\n".encode("latin-1"), r"x\.csv, line 3: not valid UTF-8"),
    ("left,right,winner\na,b,left\n".encode("utf-16"), r"x\.csv: the file is UTF-16"),
    (b"left,right,winner,left\na,b,left,c\n", r"x\.csv, line 1: column 'left' appears twice"),
])
def test_file_level_errors_name_the_file(tmp_path, data, match):
    """0 bytes gave "I/O operation on closed file"; bad bytes a raw UnicodeDecodeError; a duplicated column was
    resolved silently."""
    with pytest.raises(ValueError, match=match):
        load_pairwise_csv(_write_bytes(tmp_path, data))
    with pytest.raises(ValueError, match=r"x\.csv"):
        load_baseball(_write_bytes(tmp_path, data))


def test_directory_is_not_reported_as_missing(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_pairwise_csv(tmp_path)
    with pytest.raises(ValueError, match="no such data file"):
        load_pairwise_csv(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="path"):
        load_pairwise_csv(None)


def test_jsonl_file_errors_are_value_errors(tmp_path):
    """JSONL errors were FileNotFoundError or IsADirectoryError instead of a ValueError with file and line."""
    from prefkit import read_preferences_jsonl, write_preferences_jsonl

    with pytest.raises(ValueError, match="no such data file"):
        read_preferences_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="is a directory"):
        read_preferences_jsonl(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "x0", "chosen": "y1", "rejected": "y2"}\n{"prompt": "\xff"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: not valid UTF-8"):
        read_preferences_jsonl(bad)
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(b'{"prompt": "x0", "chosen": "y1", "rejected": "y2"}\r\n\r\n{"prompt": "x0"}\r\n')
    with pytest.raises(ValueError, match=r"crlf\.jsonl:3: missing key"):
        read_preferences_jsonl(crlf)
    with pytest.raises(ValueError, match="is a directory"):
        write_preferences_jsonl(tmp_path, [[0, 1, 2]])
    empty = tmp_path / "empty.jsonl"
    write_preferences_jsonl(empty, np.zeros((0, 3), dtype=int))
    assert read_preferences_jsonl(empty).shape == (0, 3)  # zero pairs round-trip
