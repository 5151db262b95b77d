"""Loaders for pairwise-comparison CSV files with named items.

Every loader maps item names to ids 0..n−1 (in order of first appearance) and returns a :class:`PairwiseData`
whose fields plug straight into :func:`prefkit.fit_bradley_terry`:

    data = load_llmfao()
    fit = fit_bradley_terry(data.comparisons, data.n_items, weights=data.weights,
                            winner_first=data.winner_first, names=data.names)

A malformed row raises ``ValueError`` naming the file and the line. **Ties** count as half a win each way:
a tie between a and b becomes the rows (a, b) and (b, a) with weight 0.5 each (the evalica / Chatbot Arena
convention; it is a convention, not a model of ties).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._validate import as_index_array, check_weights, read_text_file, to_numpy

__all__ = [
    "PairwiseData",
    "DATA_DIR",
    "BASEBALL_PUBLISHED",
    "BASEBALL_HOME_PUBLISHED",
    "load_baseball",
    "load_llmfao",
    "load_pairwise_csv",
]



def _data_dir() -> Path:
    """The shipped data: the package ``prefkit.data`` (``data/`` of the repository, inside the wheel when
    installed), read with importlib.resources; ``data/`` next to the package when prefkit runs uninstalled."""
    try:
        from importlib.resources import files

        return Path(str(files("prefkit.data")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "data"


DATA_DIR = _data_dir()


@dataclass
class PairwiseData:
    """Comparisons between named items.

    Attributes
    ----------
    names : list of n item names; ``names[k]`` is item k.
    comparisons : (m, 2) int64 (winner, loser).
    weights : (m,) float64 counts (0.5 for each half of a tie).
    winner_first : (m,) bool, whether the winner held the first (home, left) position.
    source : the file it came from.
    """

    names: list
    comparisons: np.ndarray
    weights: np.ndarray
    winner_first: np.ndarray
    source: str = ""

    def __post_init__(self):
        if isinstance(self.names, (str, bytes)) or not hasattr(self.names, "__len__"):
            raise ValueError(f"names must be a list of item names, got {self.names!r}")
        self.names = [str(v) for v in self.names]
        if len(set(self.names)) != len(self.names):
            raise ValueError("names has a duplicated item name")
        self.comparisons = as_index_array(self.comparisons, "comparisons", n=len(self.names), ncols=2).copy()
        m = len(self.comparisons)
        self.weights = check_weights(self.weights, m)
        try:
            wf = np.asarray(to_numpy(self.winner_first)) if self.winner_first is not None else None
        except ValueError:  # ragged
            wf = None
        if wf is None or wf.shape != (m,) or wf.dtype.kind not in "biu" or not np.all(np.isin(wf, (0, 1))):
            raise ValueError(f"winner_first must be ({m},) booleans, got {self.winner_first!r}")
        self.winner_first = wf.astype(bool)

    @property
    def n_items(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """The id of the item called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"no item called {name!r} in {self.source or 'this data set'}") from None


class _Builder:
    def __init__(self, path):
        self.path = str(path)
        self.ids: dict[str, int] = {}
        self.rows: list[tuple[int, int, float, bool]] = []

    def item(self, name: str, line: int, column: str) -> int:
        name = name.strip()
        if not name:
            raise ValueError(f"{self.path}, line {line}: empty item name in column {column!r}")
        return self.ids.setdefault(name, len(self.ids))

    def add(self, winner: int, loser: int, weight: float, winner_first: bool):
        if weight > 0:
            self.rows.append((winner, loser, weight, winner_first))

    def build(self) -> PairwiseData:
        if not self.rows:
            raise ValueError(f"{self.path}: no comparisons found")
        w, l, c, f = zip(*self.rows, strict=True)
        return PairwiseData(
            list(self.ids),
            np.stack([np.array(w), np.array(l)], axis=1).astype(np.int64),
            np.array(c, dtype=np.float64),
            np.array(f, dtype=bool),
            self.path,
        )


def _records(path, required):
    """(header, rows) of a CSV data file; rows are (physical line, {column: value}).

    The file is read by :func:`prefkit._validate.read_text_file` (UTF-8, a BOM dropped; missing files,
    directories, empty files and bad bytes are ValueErrors naming the file). Line numbers are physical lines of
    the file, where the record starts (blank lines and newlines inside quoted fields counted). CRLF and LF line
    ends are both accepted. A header naming a column twice, a missing required column, or a row with the wrong
    number of fields is a ValueError naming the file and the line.
    """
    text = read_text_file(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header, rows = None, []
    last = 0  # the physical line the previous record ended on
    try:
        for fields in reader:
            start, last = last + 1, reader.line_num
            if not fields:  # a blank line
                continue
            if header is None:
                header = [c.strip() for c in fields]
                seen = set()
                for c in header:
                    if c in seen:
                        raise ValueError(f"{path}, line {start}: column {c!r} appears twice in the header")
                    seen.add(c)
                missing = [c for c in required if c not in header]
                if missing:
                    raise ValueError(f"{path}, line {start}: missing column(s) {missing}; "
                                     f"the header has {header}")
                continue
            if len(fields) != len(header):
                raise ValueError(f"{path}, line {start}: expected {len(header)} fields, got {len(fields)}")
            rows.append((start, dict(zip(header, fields, strict=True))))
    except csv.Error as exc:
        raise ValueError(f"{path}, line {last + 1}: malformed CSV ({exc})") from None
    if header is None:
        raise ValueError(f"{path}: no header line (the file holds only blank lines)")
    return header, rows


def _count(value, path, line, column) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}, line {line}: column {column!r} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"{path}, line {line}: column {column!r} must be a finite count >= 0, got {value!r}")
    return x


BASEBALL_PUBLISHED = {
    "reference": "Baltimore",
    "estimates": {
        "Boston": (1.1077, 0.3339),
        "Cleveland": (0.6839, 0.3319),
        "Detroit": (1.4364, 0.3396),
        "Milwaukee": (1.5814, 0.3433),
        "New York": (1.2476, 0.3359),
        "Toronto": (1.2945, 0.3367),
    },
    "residual_deviance": 44.053,
    "df": 36,
    "source": "Agresti (2002), Categorical Data Analysis, Table 10.11, "
    "as reproduced in the BradleyTerry2 vignette",
}
"""The published BT fit of :func:`load_baseball` (no home advantage, Baltimore at 0): team → (est, SE)."""

BASEBALL_HOME_PUBLISHED = {
    "home_advantage": 0.302,
    "abilities_sorted": (0.044, 0.088, 0.137, 0.157, 0.164, 0.190, 0.220),
    "decimals": 3,
    "source": "Agresti (2002), Categorical Data Analysis, Table 10.11, column 5 (abilities e^θ / Σ e^θ with "
    "a home advantage); BradleyTerry2's tests/testthat/test-baseball.R checks both, rounded to 3 decimals "
    "(coef at.home = 0.302): https://rdrr.io/cran/BradleyTerry2/src/tests/testthat/test-baseball.R",
}
"""The published fit of :func:`load_baseball` with a home advantage δ, P(home wins) = σ(θ_home − θ_away + δ):
δ and the normalised abilities e^θ_k / Σ_j e^θ_j in increasing order, both rounded to ``decimals`` places
(so they are matched to half a unit in the last place, 5e-4). No standard error of δ is published there."""


def load_baseball(path=None) -> PairwiseData:
    """The 1987 American League East season (Agresti 2002, *Categorical Data Analysis*, p. 438).

    Columns ``home.team, away.team, home.wins, away.wins``; each row becomes up to two weighted comparisons:
    (home, away) with weight ``home.wins`` (winner first) and (away, home) with weight ``away.wins``.
    """
    path = DATA_DIR / "baseball_agresti1987ALE.csv" if path is None else path
    cols = ("home.team", "away.team", "home.wins", "away.wins")
    b = _Builder(path)
    for line, row in _records(path, cols)[1]:
        home = b.item(row["home.team"], line, "home.team")
        away = b.item(row["away.team"], line, "away.team")
        if home == away:
            raise ValueError(f"{path}, line {line}: a team cannot play itself ({row['home.team']!r})")
        b.add(home, away, _count(row["home.wins"], path, line, "home.wins"), True)
        b.add(away, home, _count(row["away.wins"], path, line, "away.wins"), False)
    return b.build()


def load_pairwise_csv(
    path,
    *,
    left="left",
    right="right",
    winner="winner",
    left_wins=("left",),
    right_wins=("right",),
    ties=("tie",),
) -> PairwiseData:
    """A CSV with one judgement per row: the item shown first (``left``), second (``right``) and the outcome.

    The ``winner`` column must hold one of ``left_wins``, ``right_wins`` or ``ties``. A tie becomes
    (left, right) and (right, left) with weight 0.5 each. ``winner_first`` is True when the left item won.
    """
    left, right, winner = (_column(c, n) for c, n in ((left, "left"), (right, "right"), (winner, "winner")))
    left_wins, right_wins, ties = (_labels(v, n) for v, n in ((left_wins, "left_wins"), (right_wins, "right_wins"),
                                                               (ties, "ties")))
    b = _Builder(path)
    for line, row in _records(path, (left, right, winner))[1]:
        a = b.item(row[left], line, left)
        c = b.item(row[right], line, right)
        if a == c:
            raise ValueError(f"{path}, line {line}: item {row[left]!r} is compared with itself")
        outcome = row[winner].strip()
        if outcome in left_wins:
            b.add(a, c, 1.0, True)
        elif outcome in right_wins:
            b.add(c, a, 1.0, False)
        elif outcome in ties:
            b.add(a, c, 0.5, True)
            b.add(c, a, 0.5, False)
        else:
            allowed = sorted({*left_wins, *right_wins, *ties})
            raise ValueError(
                f"{path}, line {line}: column {winner!r} must be one of {allowed}, got {outcome!r}"
            )
    return b.build()


def _column(c, name):
    if not isinstance(c, str) or not c.strip():
        raise ValueError(f"{name} must be a column name (a non-empty string), got {c!r}")
    return c.strip()


def _labels(v, name):
    """Outcome labels: a string or a collection of strings, as a tuple."""
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, (list, tuple, set, frozenset)) or not all(isinstance(s, str) for s in v):
        raise ValueError(f"{name} must be a string or a tuple of strings, got {v!r}")
    return tuple(v)


def load_llmfao(path=None) -> PairwiseData:
    """LLMFAO (Ustalov 2023): 8,931 crowd judgements of answers by 59 LLMs, with ties and positions.

    Each row's ``left`` and ``right`` are the model names as shown; ``winner`` is ``left``, ``right`` or
    ``tie``. License CC BY 4.0, © Dmitry Ustalov (github.com/dustalov/llmfao); see data/README.md.
    """
    path = DATA_DIR / "llmfao.csv" if path is None else path
    return load_pairwise_csv(path)
