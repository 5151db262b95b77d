"""Bradley-Terry's input handling from the inside: ``_prepare`` (n_items, self-comparisons, winner_first) and
``_aggregate`` (the comparisons summed into unique pairs) on the paths the other tests do not reach: keys beyond
int32, no comparisons on the sorted path. Written for mutation run 6 (``_aggregate``, ``_prepare``)."""

import numpy as np
import pytest

from prefkit import fit_bradley_terry, mle_obstruction
from prefkit.bradley_terry import _aggregate, _prepare


def _by_hand(comps, weights, first):
    """The unique pairs and their two counts, by a Python dict (the definition)."""
    out = {}
    for k, (w_, l_) in enumerate(np.asarray(comps).tolist()):
        wt = 1.0 if weights is None else float(weights[k])
        if wt == 0:
            continue
        if first is None:
            key, a_won = (min(w_, l_), max(w_, l_)), w_ < l_
        else:
            key, a_won = ((w_, l_), True) if first[k] else ((l_, w_), False)
        counts = out.setdefault(key, [0.0, 0.0])
        counts[0 if a_won else 1] += wt
    return out


def _check_edges(edges, by_hand, n):
    keys = sorted(by_hand)
    assert list(zip(edges.i.tolist(), edges.j.tolist(), strict=True)) == keys
    np.testing.assert_array_equal(edges.n_ij, [by_hand[k][0] for k in keys])
    np.testing.assert_array_equal(edges.n_ji, [by_hand[k][1] for k in keys])
    assert len(edges.indptr) == n + 1 and edges.indptr[0] == 0 and edges.indptr[-1] == len(keys)
    np.testing.assert_array_equal(np.repeat(np.arange(n), np.diff(edges.indptr)), edges.i)
    np.testing.assert_array_equal(edges.indices, edges.j)
    # the CSR pattern in scipy's index type (int32 here), i and j in numpy's (intp)
    assert edges.indices.dtype == edges.indptr.dtype == np.int32
    assert edges.i.dtype == edges.j.dtype == np.intp


@pytest.mark.parametrize("n_items", [40, 3000])  # 40: one bincount over the keys; 3000 (n² > 2m): sorted keys
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("with_positions", [False, True])
def test_aggregation_matches_counting_by_hand(n_items, weighted, with_positions):
    """_aggregate against a Python dict, on every path: with and without weights (without, the sorted path
    counts runs of equal keys and never builds a weight array), with and without positions (ordered pairs)."""
    rng = np.random.default_rng(11)
    comps = rng.integers(0, 40, size=(3000, 2))
    comps = comps[comps[:, 0] != comps[:, 1]]
    weights = rng.choice([0.0, 0.25, 1.0, 2.0], size=len(comps)) if weighted else None
    first = rng.random(len(comps)) < 0.5 if with_positions else None
    edges = _aggregate(*_prepare(comps, n_items, weights, first, unit_weights_as_none=True))
    by_hand = _by_hand(comps, weights, first)
    keys = sorted(by_hand)
    assert list(zip(edges.i.tolist(), edges.j.tolist(), strict=True)) == keys
    np.testing.assert_allclose(edges.n_ij, [by_hand[k][0] for k in keys], rtol=1e-15)
    np.testing.assert_allclose(edges.n_ji, [by_hand[k][1] for k in keys], rtol=1e-15)
    rows = np.repeat(np.arange(n_items), np.diff(edges.indptr))
    np.testing.assert_array_equal(rows, edges.i)  # the CSR pattern is the pairs, row by row
    np.testing.assert_array_equal(edges.indices, edges.j)


# ------------------------------------------------------------------------------- mutation run 6: _aggregate
@pytest.mark.parametrize("n", [32768, 40000, 46000])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("with_positions", [False, True])
def test_pair_keys_beyond_int32(n, weighted, with_positions):
    """A comparison's key 2·(a·n + b) + [b won] reaches 2n² − 1, past int32 (2³¹ − 1) once n > 32768: there the
    keys must be int64, or they wrap negative and the pairs come out wrong (or the CSR search fails). Items near
    the top id make the largest keys. Bugs caught (mutmut run 6): the int32/int64 choice made by anything but
    2n² (``2·n/n``, ``2/n·n``, always int32, or a threshold of 2³² or 3³¹: 32768 < n ≤ 46340 overflows)."""
    top = np.arange(n - 6, n)
    comps = np.array([(top[5], top[4]), (top[4], top[5]), (top[0], top[5]), (top[5], top[0]), (top[5], top[0]),
                      (0, top[5]), (top[3], 0), (1, 2), (top[2], top[1])])
    weights = np.array([1.0, 2.0, 0.5, 0.25, 3.0, 1.5, 0.0, 4.0, 2.5]) if weighted else None
    first = np.array([True, False, True, True, False, False, True, True, False]) if with_positions else None
    edges = _aggregate(*_prepare(comps, n, weights, first, unit_weights_as_none=True))
    _check_edges(edges, _by_hand(comps, weights, first), n)


@pytest.mark.parametrize("n", [5, 2000])  # 5: one bincount over the keys; 2000 (n² > 2²⁰): the sorted path
@pytest.mark.parametrize("unit_weights_as_none", [False, True])
def test_no_comparisons(n, unit_weights_as_none):
    """No comparisons at all (or only ones of weight 0, dropped first) give no pairs: empty counts and an all-zero
    indptr, on both paths, with and without a weight array. Bugs caught (mutmut run 6): the sorted path's empty
    ``starts`` or ``sums`` made None, of length 1, or of a float type (a crash or a phantom pair)."""
    empty = np.zeros((0, 2), dtype=np.int64)
    edges = _aggregate(*_prepare(empty, n, None, None, unit_weights_as_none=unit_weights_as_none))
    _check_edges(edges, {}, n)
    assert edges.n_ij.dtype == edges.n_ji.dtype == np.float64
    if not unit_weights_as_none:
        zero = _aggregate(*_prepare([[0, 1], [1, 0]], n, [0.0, 0.0], None))
        _check_edges(zero, {}, n)
    assert mle_obstruction(empty, 1) is None  # one item, no data: the MLE is θ = 0
    assert fit_bradley_terry(empty, 1).converged



# --------------------------------------------------------------------------------- mutation run 6: _prepare
@pytest.mark.parametrize("bad", [True, False, 2.5, 3.0, 0, -1, "3", np.float64(3.0)])
def test_n_items_must_be_a_positive_integer(bad):
    """n_items is a count: a bool, a float (even 3.0), a string, 0 or a negative is refused by name, while a numpy
    integer is accepted. Bugs caught (mutmut run 6): ``and`` for ``or`` in the check (3.0 or 2.5 became
    int(n_items), True became 1)."""
    with pytest.raises(ValueError, match="n_items must be a positive integer"):
        _prepare([[0, 1]], bad, None, None)
    assert _prepare([[0, 1]], np.int64(3), None, None)[1] == 3


def test_self_comparison_names_its_row():
    """The error for a row comparing an item with itself names that row and item. Bug caught (mutmut run 6):
    the row found by comparing column 1 with itself (always row 0)."""
    with pytest.raises(ValueError, match="comparisons row 2 compares item 1 with itself"):
        _prepare([[0, 1], [2, 3], [1, 1], [3, 3]], None, None, None)


@pytest.mark.parametrize("as_type", [int, float, np.uint8])
def test_winner_first_as_zeros_and_ones(as_type):
    """winner_first may be given as 0/1 numbers of any integer or float type: the same as the booleans, down to
    the fitted order effect. Any other number is refused. Bugs caught (mutmut run 6): ``and`` for ``or``, or a
    test of the kind or of the values inverted (0/1 numbers refused, or 0.5 let through as True), the allowed
    values (0, 1) changed to (1, 1) or (0, 2), and the converted array dropped (the positions ignored)."""
    rng = np.random.default_rng(0)
    comps = np.array([(a, b) for a in range(4) for b in range(4) if a != b] * 3)
    first = rng.random(len(comps)) < 0.6
    pairs, n, w, wf = _prepare(comps, None, None, np.asarray(first).astype(as_type))
    assert wf.dtype == np.bool_
    np.testing.assert_array_equal(wf, first)
    fit_bool = fit_bradley_terry(comps, winner_first=first)
    fit_num = fit_bradley_terry(comps, winner_first=np.asarray(first).astype(as_type))
    assert fit_bool.order_effect != 0.0 and fit_num.order_effect == fit_bool.order_effect
    np.testing.assert_array_equal(fit_num.strengths, fit_bool.strengths)
    for bad in ([0.5] + [1.0] * (len(comps) - 1), [2] + [1] * (len(comps) - 1), [-1] + [0] * (len(comps) - 1)):
        with pytest.raises(ValueError, match="winner_first must be booleans"):
            _prepare(comps, None, None, np.array(bad))


def _partition(labels):
    """Labels renumbered by first appearance: two labellings of the same partition become equal arrays."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]


@pytest.mark.parametrize("seed", range(6))
def test_strong_components_from_a_sample_match_the_whole_graph(seed):
    """On dense data the existence check finds the strongly connected components of a sample of the pairs, then of
    the small graph of those components joined by every other arc. Against scipy on the whole win graph, on every
    pair of 200 items with planted structure: a group that never lost to the rest, a group that never won, a chain
    of blocks each beating every later block, an item that only won and one never compared. Bugs caught (each
    checked by hand): a lost pair's arc j → i taken as i → j, a lost pair read from n_ij, the merged labels not
    composed with the sample's. (Reversing every arc is no bug: it leaves the components unchanged.)"""
    from scipy.sparse.csgraph import connected_components

    from prefkit.bradley_terry import _strong_components, _win_graph

    rng = np.random.default_rng(seed)
    n = 200
    theta = rng.normal(size=n) * (0.5 + seed)
    i, j = np.triu_indices(n, 1)
    win = rng.random(len(i)) < 1 / (1 + np.exp(theta[j] - theta[i]))  # i beat j
    kind = seed % 3
    if kind == 0:  # items 0–9 never lost to the rest, 190–199 never won against it
        top, bottom = (i < 10) & (j >= 10), (j >= 190) & (i < 190)
        win = np.where(top, True, np.where(bottom, True, win))
    elif kind == 1:  # blocks of 40: each beats every later block
        win = np.where(i // 40 != j // 40, True, win)
    else:  # item 7 beat everyone; item 11 was never compared
        win = np.where((i == 7) | (j == 7), i == 7, win)
        keep = (i != 11) & (j != 11)
        i, j, win = i[keep], j[keep], win[keep]
    comps = np.where(win[:, None], np.stack([i, j], 1), np.stack([j, i], 1))
    comps = np.concatenate([comps, comps[rng.integers(0, len(comps), 3000)]])  # repeats: counts above 1
    edges = _aggregate(*_prepare(comps, n, None, None)[:3], None)
    assert len(edges.i) // (16 * n) >= 4  # the sample path runs
    whole = connected_components(_win_graph(n, edges.n_ij, edges.n_ji, edges.indices, edges.indptr),
                                 directed=True, connection="strong")
    n_comp, labels = _strong_components(edges)
    assert n_comp == whole[0] and n_comp > 1
    np.testing.assert_array_equal(_partition(labels), _partition(whole[1]))
    assert mle_obstruction(comps, n) is not None
