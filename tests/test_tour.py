import json

import pytest

from prefkit.course.claims import Chapter, chapters, claim_spec, expect
from prefkit.course.tour import format_table


def _chapter():
    ch = Chapter(99, "Test", "99_test.ipynb")
    ch.claim("small", "a small error", at_most=1e-8, section="1. S")
    ch.claim("big", "a large value", at_least=0.5, section="1. S")
    ch.claim("band", "a value in a band", within=(-0.6, -0.4), section="2. T")
    ch.claim("round", "round-off", at_most=1e-12, section="2. T", kind="precision")
    ch.claim("flag", "the thing holds", flag=True, section="2. T")
    return ch


def test_claim_ops():
    c = _chapter().claims
    assert c["small"].judge(1e-9).passed and not c["small"].judge(1e-7).passed
    assert c["big"].judge(0.9).passed and not c["big"].judge(0.1).passed
    assert c["band"].judge(-0.5).passed and not c["band"].judge(0.0).passed
    assert not c["small"].judge(float("nan")).passed
    assert c["flag"].judge(True).passed and not c["flag"].judge(False).passed
    assert c["flag"].judge(1).measured_str() == "yes"


def test_a_claim_is_defined_once_with_one_tolerance():
    ch = _chapter()
    with pytest.raises(ValueError, match="defined twice"):
        ch.claim("small", "again", at_most=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        ch.claim("two", "two tolerances", at_most=2.0, at_least=0.0)
    with pytest.raises(ValueError, match="no tolerance"):
        ch.claim("f", "flag with a tolerance", flag=True, at_most=1.0)


def test_expect_uses_the_registered_claim():
    spec = next(iter(chapters()[1].claims.values()))
    assert claim_spec(spec.id) is spec
    bad = spec.tolerance + 1.0 if spec.op == "<=" else (spec.tolerance - 1.0 if spec.op == ">=" else 1e9)
    with pytest.raises(AssertionError, match="FAIL"):
        expect(spec.id, bad, quiet=True)
    with pytest.raises(ValueError, match="no claim"):
        claim_spec("ch2.no_such_claim")
    with pytest.raises(ValueError, match="look like"):
        claim_spec("gibbs")


def test_table_fits_100_columns_and_groups_precision_rows():
    ch = _chapter()
    claims = [s.judge(0.0) for s in ch.claims.values()]
    text = format_table(claims)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "numerical precision" in text and "yes" in text and "NO" in text
    # precision rows from two sections still sit under one heading per chapter
    ch.claim("round2", "more round-off", at_most=1e-12, section="1. S", kind="precision")
    text = format_table([s.judge(0.0) for s in ch.claims.values()])
    assert text.count("numerical precision") == 1
    long = ch.claim("long", "word " * 40 + "END", at_most=1.0, section="1. S")
    assert "END" in format_table([long.judge(0.0)])


def test_markdown_and_json_formats():
    claims = [s.judge(0.0) for s in _chapter().claims.values()]
    md = format_table(claims, fmt="markdown")
    assert "| claim | measured | tolerance | pass |" in md
    rows = json.loads(format_table(claims, fmt="json"))
    assert {r["id"] for r in rows} == {c.id for c in claims} and all("passed" in r for r in rows)


def test_cli_tour_with_no_matching_checks_fails(tmp_path, capsys):
    from prefkit.__main__ import main

    assert main(["tour", "--only", "no-such-check", "--figures", str(tmp_path)]) == 2
    assert "no check matches" in capsys.readouterr().out


def test_every_chapter_registers_checks_and_claims():
    for ch in chapters():
        assert ch.checks and ch.claims, f"chapter {ch.number} has no checks or no claims"


def test_parallel_tour_gives_the_same_claims_in_the_same_order(tmp_path):
    from prefkit.course.tour import TourContext, run_tour

    ctx = TourContext(figdir=None, fast=True, seed=3)
    times1, times2 = [], []
    one, err1 = run_tour(ctx, only="2", echo=lambda *a: None, durations=times1)
    two, err2 = run_tour(ctx, only="2", echo=lambda *a: None, jobs=2, durations=times2)
    assert not err1 and not err2 and one
    assert [(c.id, c.measured) for c in one] == [(c.id, c.measured) for c in two]
    specs = {s.id: s for s in chapters()[1].claims.values()}
    assert all(c.spec is specs[c.id] for c in two)  # the parent's ClaimSpec objects, not pickled copies
    names = [name for name, _ in chapters()[1].checks]
    assert [t.check for t in times1] == [t.check for t in times2] == names
    assert all(t.wall_s >= 0 and t.cpu_s >= 0 for t in times1 + times2)


def test_format_durations_lists_the_slowest_first():
    from prefkit.course.tour import CheckTime, format_durations

    times = [CheckTime("1 A", "quick", 0.5, 0.4), CheckTime("2 B", "slow", 9.0, 8.5), CheckTime("3 C", "mid", 2.0, 2.0)]
    lines = format_durations(times, 2).splitlines()
    assert lines[0] == "slowest 2 checks (wall s, CPU s):"
    assert "slow" in lines[1] and "mid" in lines[2] and len(lines) == 3


def test_slow_checks_are_marked():
    ch = _chapter()
    ch.check("a slow one", slow=True)(lambda ctx: [])
    ch.check("a quick one")(lambda ctx: [])
    assert ch.is_slow("a slow one") and not ch.is_slow("a quick one")
    assert any(c.is_slow(name) for c in chapters() for name, _ in c.checks if c.number == 7)


def test_cli_tour_durations_and_bad_jobs(tmp_path, capsys):
    from prefkit.__main__ import main

    assert main(["tour", "--fast", "--only", "limits of β", "--jobs", "1", "--durations", "3",
                 "--figures", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "slowest 1 checks (wall s, CPU s):" in out and "limits of β" in out.split("slowest")[1]
    assert main(["tour", "--jobs", "0", "--figures", str(tmp_path)]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
