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


def test_cli_tour_fails_on_a_claim_no_check_measured(tmp_path, capsys, monkeypatch):
    """A claim defined in a chapter but measured by no check fails the whole tour, naming it. (This is what makes
    ``./dev test``'s fast tours at seeds 0, 1, 2 the test that every chapter's claims are measured and pass.)"""
    from prefkit.__main__ import main
    from prefkit.course import tour

    specs = [s for ch in chapters() for s in ch.claims.values()]
    forgotten = specs[len(specs) // 2]

    def fake_run_tour(ctx, only=None, echo=None, jobs=1, durations=None):
        return [s.judge(0.0) for s in specs if s is not forgotten], []  # pass or fail: only "measured" matters

    monkeypatch.setattr(tour, "run_tour", fake_run_tour)
    code = main(["tour", "--fast", "--figures", str(tmp_path)])
    out = capsys.readouterr()
    assert code != 0 and f"claim {forgotten.id} is defined but no check measured it" in out.out + out.err


def test_grouped_checks_form_one_task_slow_first():
    """The parallel tour's tasks: chapters 7 and 8's pipeline checks (one group) are one task, in chapter order, and
    start first; every other check is a task of its own, in chapter order. Catches a group split across processes
    (the pipeline would train twice) and a lost or duplicated check."""
    from prefkit.course.ch7_tiny_lm import PIPELINE_GROUP
    from prefkit.course.tour import _tasks

    todo = [(i, j, ch, name, fn) for i, ch in enumerate(chapters()) for j, (name, fn) in enumerate(ch.checks)]
    tasks = _tasks(todo)
    assert sorted(t[:2] for task in tasks for t in task) == [t[:2] for t in todo]  # each check once
    grouped = [task for task in tasks if len(task) > 1]
    assert len(grouped) == 1 and [ch.number for _, _, ch, _ in grouped[0]] == [7, 8]
    assert all(ch.groups[name] == PIPELINE_GROUP for _, _, ch, name in grouped[0])
    slow = [any(ch.is_slow(name) for _, _, ch, name in task) for task in tasks]
    assert slow == sorted(slow, reverse=True) and slow[tasks.index(grouped[0])]  # slow ones first, the group too
    rest = [t[:2] for task in tasks if not any(ch.is_slow(n) for _, _, ch, n in task) for t in task]
    assert rest == sorted(rest)


def test_cli_tour_no_figures(tmp_path, capsys, monkeypatch):
    """``--no-figures``: the checks get no figure folder (nothing is written) and the summary says so."""
    from prefkit.__main__ import main

    monkeypatch.chdir(tmp_path)
    check = "implied reward and f(x) invariance"  # writes ch2_optimal_policy.png
    assert main(["tour", "--fast", "--only", check, "--figures", "with", "--jobs", "1"]) == 0
    assert [p.name for p in (tmp_path / "with").iterdir()] == ["ch2_optimal_policy.png"]
    capsys.readouterr()
    assert main(["tour", "--fast", "--only", check, "--no-figures", "--jobs", "1"]) == 0
    assert "no figures written" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["with"]
