import pytest

from prefkit.tour import Claim, claim, expect, format_table


def test_claim_ops():
    assert claim("a", 1e-9, at_most=1e-8).passed
    assert not claim("a", 1e-7, at_most=1e-8).passed
    assert claim("a", 0.9, at_least=0.5).passed
    assert claim("a", -0.5, within=(-0.6, -0.4)).passed
    assert not claim("a", float("nan"), at_most=1.0).passed


def test_expect_raises_on_failure():
    with pytest.raises(AssertionError):
        expect("fails", 2.0, at_most=1.0, quiet=True)
    with pytest.raises(ValueError):
        claim("two tolerances", 1.0, at_most=2.0, at_least=0.0)


def test_table_has_columns():
    t = format_table([Claim("x", 1.0, "<=", 2.0, "1 BT")])
    assert "claim" in t and "measured" in t and "tolerance" in t and "yes" in t


def test_table_wraps_long_claims_instead_of_cutting():
    text = "word " * 40 + "END"
    t = format_table([Claim(text, 1.0, "<=", 2.0, "1 BT")], claim_width=30)
    assert "END" in t and "…" not in t


def test_cli_tour_with_no_matching_checks_fails(tmp_path, capsys):
    from prefkit.__main__ import main

    # a tour that ran no claim must not pass, and says why
    assert main(["tour", "--only", "no-such-check", "--figures", str(tmp_path)]) == 2
    assert "no check matches" in capsys.readouterr().out


def test_every_chapter_registers_checks():
    from prefkit.tour import registry

    chapters = {e.chapter.split()[0] for e in registry()}
    assert {"1", "2", "3", "4", "5", "6", "7"} <= chapters, chapters
