"""The shape of the project, enforced: the library never imports the course, each claim is written once (the
notebooks name claims by id and never write a tolerance), ``import prefkit`` does not import torch, the exports are
explicit and collision-free, and every notebook runs from anywhere (no sys.path edits, an install cell for Colab)."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import prefkit
from prefkit.course.claims import CHAPTERS, chapters
from prefkit.course.exercises import exercises_of
from prefkit.course.grading import _stub_body

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "prefkit"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
INSTALL_URL = "git+https://github.com/prefkit/prefkit"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, absolute (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _library_files():
    return [p for p in PKG.rglob("*.py") if "course" not in p.relative_to(PKG).parts and p.name != "__main__.py"]


def test_library_never_imports_the_course():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.startswith("prefkit.course"))
                 for p in _library_files()}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_old_places_are_gone_from_the_code():
    """No code imports the pre-course registry, checks or exercise modules, nor a `solutions` package."""
    bad = ("prefkit.tour", "prefkit.checks", "prefkit.exercises", "solutions")
    for p in [*PKG.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        hits = [m for m in _imports(p) if m in bad or any(m.startswith(b + ".") for b in bad)]
        assert not hits, f"{p.relative_to(ROOT)} imports {hits}"


def test_import_prefkit_does_not_import_torch():
    code = ("import sys, prefkit; prefkit.fit_bradley_terry; prefkit.optimal_policy; prefkit.load_baseball; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, "import prefkit imported torch"


def test_exports_are_explicit_unique_and_resolve():
    names = prefkit.__all__
    assert len(names) == len(set(names)), "duplicate names in prefkit.__all__"
    for name in names:
        assert getattr(prefkit, name) is not None, name
    modules = {p.stem for p in PKG.glob("*.py")} | {p.name for p in PKG.iterdir() if p.is_dir()}
    assert not set(names) & modules, f"a module and an exported name share a name: {set(names) & modules}"
    lowered = {n.lower() for n in names}
    near = sorted(n for n in lowered if n.endswith("s") and n[:-1] in lowered)
    assert not near, f"exported names that differ by a plural: {near}"


def test_every_chapter_has_a_module_and_a_notebook():
    assert len(chapters()) == len(CHAPTERS)
    have = {p.name for p in NOTEBOOKS}
    for ch in chapters():
        assert ch.notebook in have, f"chapter {ch.number}: no notebooks/{ch.notebook}"


def _code_cells(nb):
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_names_claims_by_id_and_runs_anywhere(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    number = int(path.name[:2])
    assert nb["metadata"].get("prefkit", {}).get("chapter") == number, "metadata.prefkit.chapter"
    cells = _code_cells(nb)
    first = cells[0]
    assert "except ImportError" in first and f'"prefkit @ {INSTALL_URL}"' in first, "install cell first"
    code = "\n".join(cells)
    for banned in ("sys.path", "import solutions", "from solutions", "prefkit.tour", "prefkit.exercises",
                   "at_most=", "at_least=", "within="):
        assert banned not in code, f"{path.name} contains {banned!r}"
    ch = chapters()[number - 1]
    ids = re.findall(r"""expect\(\s*["'](ch\d+\.[\w.]+)["']""", code)
    assert ids, f"{path.name} checks no claim"
    assert set(ids) <= {s.id for s in ch.claims.values()}, set(ids) - {s.id for s in ch.claims.values()}
    n_expect = len(re.findall(r"\bexpect\(", code))
    assert n_expect == len(ids), f"{path.name}: every expect(...) must name a claim id as a string literal"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_slide_rows_are_measured_and_shown(path):
    """Chapters 1-7 (the slides' chapters) close with slides_table(N); each of its claims is measured above it."""
    number = int(path.name[:2])
    ch = chapters()[number - 1]
    if number > 7 and not ch.slides:
        pytest.skip("chapters past the slides need no slide rows")
    assert ch.slides, f"chapter {number} has no CHAPTER.slide(...) rows"
    code = "\n".join(_code_cells(json.loads(path.read_text(encoding="utf-8"))))
    assert f"slides_table({number})" in code, f"{path.name} does not show slides_table({number})"
    before = code.split(f"slides_table({number})")[0]
    for row in ch.slides:
        for cid in row.claims:
            assert f'expect("{cid}"' in before, f"{path.name}: slide claim {cid} is not measured before the table"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_claim_sections_are_notebook_headings(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    headings = {m.strip() for c in nb["cells"] if c["cell_type"] == "markdown"
                for m in re.findall(r"^#+\s+(.*)$", "".join(c["source"]), flags=re.M)}
    ch = chapters()[int(path.name[:2]) - 1]
    missing = sorted({s.section for s in ch.claims.values()} - headings)
    assert not missing, f"{path.name}: claim sections that are not headings of the notebook: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_stubs_give_nothing_away(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    number = int(path.name[:2])
    code = "\n".join(_code_cells(nb))
    for ex in exercises_of(number):
        body = _stub_body(code, ex.stub)
        assert body is not None, f"{path.name} has no stub {ex.stub} for {ex.id}"
        assert body == "raise NotImplementedError  # your code here", f"{ex.stub}: {body!r}"
        assert f'attempt("{ex.id}", {ex.stub})' in code, f"{path.name} does not attempt {ex.id}"


def test_readme_states_the_install_url_once():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(INSTALL_URL) == 1
