"""The documentation says what the code does: the quantizer table of the quantizers guide is the
registry, every module is on the module map, and every reference points at a file inside this
repository."""

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from repository import ROOT

QUANTIZERS_GUIDE = ROOT / "docs" / "guide" / "quantizers.md"
# Files a user of a fresh clone reads; none may send them outside the repository.
DOC_TREES = ("README.md", "docs", "qbc", "envs", "agents", "scripts")
OUTSIDE_REFERENCES = ("../shared", "PAPERS.md", "DESIGN.md")
TEXT_SUFFIXES = {".md", ".py", ".toml", ".sh", ".txt", ".json", ".csv"}


def _section(text: str, heading: str) -> str:
    """The body of the markdown section whose heading line starts with ``heading``."""
    match = re.search(rf"^#+ {re.escape(heading)}.*?$(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def readme_quantizer_names() -> list[str]:
    """Names in the first column of the quantizers guide's table (`` `name` `` cells)."""
    body = _section(QUANTIZERS_GUIDE.read_text(), "Quantizers (")
    return re.findall(r"^\| `([^`]+)` \|", body, re.M)


@functools.cache
def fresh_registry() -> tuple[str, ...]:
    """``available_quantizers()`` right after ``import qbc.quantizers`` in a new interpreter: the
    built-in names only (other tests register their own, and may import more modules first).
    One interpreter per run of the suite: its answer does not change meanwhile."""
    code = ("import qbc.quantizers as q; q.make_quantizer('theorem6'); "
            "print(','.join(q.available_quantizers()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return tuple(out.stdout.strip().split(","))


def test_theorem6_is_registered_on_package_import():
    assert "theorem6" in fresh_registry()


def test_guide_quantizer_table_is_the_registry():
    names = readme_quantizer_names()
    assert len(names) == len(set(names)), f"duplicate rows in the guide's table: {names}"
    assert sorted(names) == sorted(fresh_registry())


def test_readme_table_parser_reads_rows():
    # The comparison above is only as good as the parser: it must find the rows it claims to.
    names = readme_quantizer_names()
    assert {"uniform", "smooth", "kmeans"} <= set(names)


def _text_files():
    for entry in DOC_TREES:
        path = ROOT / entry
        if path.is_file():
            yield path
            continue
        for file in sorted(path.rglob("*")):
            if file.is_file() and file.suffix in TEXT_SUFFIXES and "__pycache__" not in file.parts:
                yield file


def test_no_reference_points_outside_the_repository():
    offenders = []
    for file in _text_files():
        for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
            for needle in OUTSIDE_REFERENCES:
                if needle in line:
                    offenders.append(f"{file.relative_to(ROOT)}:{number}: {needle}")
    assert not offenders, "references outside the repository:\n" + "\n".join(offenders)


def test_theory_and_architecture_docs_exist():
    theory = (ROOT / "docs" / "theory.md").read_text()
    # each of the four source papers, by arXiv id or venue
    for paper in ("2603.20538", "Jeong", "ProxConnect", "Compressive"):
        assert paper in theory, paper
    assert "docs/theory.md" in (ROOT / "README.md").read_text()


def _modules() -> list[str]:
    """Every package and module under qbc/, envs/, agents/ and every script, as repo paths."""
    paths = []
    for tree in ("qbc", "envs", "agents"):
        for file in sorted((ROOT / tree).rglob("*.py")):
            rel = file.relative_to(ROOT)
            paths.append(str(rel.parent) + "/" if rel.name == "__init__.py" else str(rel))
    paths += [str(f.relative_to(ROOT)) for f in sorted((ROOT / "scripts").glob("*"))
              if f.is_file()]
    return paths


def test_architecture_lists_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [m for m in _modules() if f"`{m}`" not in text]
    assert not missing, "docs/architecture.md does not list: " + ", ".join(missing)


def _tables(path: Path):
    """(first line number, header row, the 4 lines before and after) of each table in ``path``."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|"):
            start = i
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            yield start + 1, lines[start], "\n".join(lines[max(0, start - 4):i + 4])
        i += 1


def test_the_readme_holds_no_results_table():
    # Numbers live in docs/results (and the guides that cite them); the README links there.
    assert not list(_tables(ROOT / "README.md"))


def test_every_results_table_in_the_docs_says_what_made_it():
    reference_tables = ("| name | what | worst-case bound |",  # the quantizer registry
                        "| guide | what |")  # the guides' index
    pages = sorted((ROOT / "docs" / "guide").glob("*.md")) + [ROOT / "docs" / "performance.md",
                                                            ROOT / "docs" / "getting-started.md"]
    tables = [(page, *table) for page in pages for table in _tables(page)]
    assert len(tables) >= 3
    for page, line, header, around in tables:
        if header in reference_tables:
            continue
        where = f"{page.relative_to(ROOT)} table at line {line}"
        assert re.search(r"commit [0-9a-f]{7}", around), f"{where}: no commit"
        assert re.search(r"20\d\d-\d\d-\d\d", around), f"{where}: no date"
        assert "`" in around, f"{where}: no command"



# -- statements about registry members agree with the registry -----------------------------------
THEORY_BOUND_HEADER = "| quantizer | worst-case bound (`error_bound`) |"


def _bound_cells(text: str, header: str) -> dict[str, str]:
    """name -> bound cell of the markdown table under ``header`` (rows `` | `name` | ... | ``;
    the bound is the last cell), indented tables included."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == header)
    cells = {}
    for line in lines[start + 2:]:
        row = line.strip()
        if not row.startswith("|"):
            break
        parts = [part.strip() for part in row.strip("|").split("|")]
        assert len(parts) >= 2 and re.fullmatch(r"`[^`]+`", parts[0]), f"unreadable: {row!r}"
        cells[parts[0].strip("`")] = parts[-1]
    return cells


def _registry_bound(name: str) -> float | None:
    """``error_bound`` of the built-in quantizer ``name``, fitted on seeded normal data."""
    import numpy as np

    from qbc.errors import InvalidValueError
    from qbc.quantizers import make_quantizer

    x = np.random.default_rng(0).normal(size=(400, 2))
    try:
        return make_quantizer(name).fit(x[:, 0]).error_bound
    except InvalidValueError:  # a joint quantizer (vq) fits whole action vectors
        return make_quantizer(name).fit(x).error_bound


@pytest.mark.parametrize("doc,header", [
    ("docs/guide/quantizers.md", "| name | what | worst-case bound |"),
    ("docs/theory.md", THEORY_BOUND_HEADER),
])
def test_which_quantizers_have_a_worst_case_bound_is_what_the_registry_says(doc, header):
    cells = _bound_cells((ROOT / doc).read_text(), header)
    assert sorted(cells) == sorted(fresh_registry()), f"{doc}: rows are not the registry"
    wrong = [f"{name}: says {cell!r}, error_bound is {_registry_bound(name)!r}"
             for name, cell in cells.items()
             if cell.lower().startswith("none") != (_registry_bound(name) is None)]
    assert not wrong, f"{doc} contradicts the registry:\n" + "\n".join(wrong)


def test_theory_page_names_no_bound_for_a_quantizer_without_one():
    # prose, not only the table: "have a worst-case bound" lists only quantizers that have one
    text = (ROOT / "docs" / "theory.md").read_text()
    for sentence in re.split(r"(?<=[.;])\s", " ".join(text.split())):
        if "have a worst-case bound" in sentence and "none" not in sentence:
            named = re.findall(r"`([a-z_0-9]+)`", sentence.split("have a worst-case bound")[0])
            unbounded = [n for n in named if n in fresh_registry() and _registry_bound(n) is None]
            assert not unbounded, f"theory.md says {unbounded} have a worst-case bound"


def test_theory_page_does_not_deny_the_chunk_tokenizers():
    from qbc.chunking import available_chunk_tokenizers

    text = " ".join((ROOT / "docs" / "theory.md").read_text().split())
    assert "not part of qbc" not in text
    for name in available_chunk_tokenizers():
        assert f"`{name}`" in text, f"theory.md does not name the chunk tokenizer {name!r}"


# Prose that says a quantizer has a worst-case bound, in the pages and the quantizers' docstrings.
BOUND_PROSE = ("docs/theory.md", "docs/guide/quantizers.md", "qbc/quantizers/binning.py",
               "qbc/quantizers/learned.py", "qbc/quantizers/base.py",
               "qbc/quantizers/construction.py")
DENIALS = ("none", "no worst-case")


def _sentences_naming_a_bound(text: str) -> list[str]:
    """Sentences (split at '.', ';' and blank lines) that speak of a worst-case (error) bound."""
    flat = " ".join(text.split())
    return [s for s in re.split(r"(?<=[.;])\s", flat)
            if re.search(r"worst-case (error )?bound", s)]


def _unbounded_named_as_bounded(text: str) -> list[str]:
    """'name: sentence' for each sentence of ``text`` that names a quantizer beside "worst-case
    bound" without denying the bound (none, no worst-case bound) while the registry's
    error_bound of that quantizer is None."""
    wrong = []
    for sentence in _sentences_naming_a_bound(text):
        if any(d in sentence.lower() for d in DENIALS):
            continue
        named = set(re.findall(r"``?([a-z_0-9]+)``?", sentence)) & set(fresh_registry())
        wrong += [f"{n}: {sentence!r}" for n in sorted(named) if _registry_bound(n) is None]
    return wrong


@pytest.mark.parametrize("path", BOUND_PROSE)
def test_prose_about_worst_case_bounds_names_no_unbounded_quantizer_as_bounded(path):
    wrong = _unbounded_named_as_bounded((ROOT / path).read_text())
    assert not wrong, f"{path} says these have a worst-case bound:\n" + "\n".join(wrong)


def test_bound_prose_check_catches_the_old_binning_docstring():
    old = ('"""Binning quantizers with a worst-case error bound: ``uniform``, ``smooth`` and '
           '``sign``."""')
    assert [w.split(":")[0] for w in _unbounded_named_as_bounded(old)] == ["sign"]


def _stochastic_over_nearest_floor() -> list[float]:
    """Stochastic / nearest-rounding smooth floor regret, per distinct published pair of means:
    the sweeps' quantized-expert against quantized-expert-nearest rows (same cell and H), and the
    learner-vs-floor summaries' qexp_stochastic_regret against qexp_regret. A pair published
    twice (a sweep's ``_defaults`` re-run rolls out the same floors; the rows of one floor's
    methods and decodings repeat it) counts once, whatever its last digits (a re-run sums the
    seeds in another order)."""
    import csv

    same = lambda value: f"{float(value):.12g}"  # noqa: E731
    pairs = set()
    for path in sorted((ROOT / "docs" / "results" / "sweeps").glob("*/summary.csv")):
        rows = list(csv.DictReader(path.open()))
        cell = lambda r: tuple(r[k] for k in ("env", "quantizer", "bins", "n_demos", "H"))  # noqa: E731
        nearest = {cell(r): same(r["regret_mean"]) for r in rows
                   if r["policy"] == "quantized-expert-nearest"}
        pairs |= {(cell(r), same(r["regret_mean"]), nearest[cell(r)]) for r in rows
                  if r["policy"] == "quantized-expert" and cell(r) in nearest}
    for path in sorted((ROOT / "docs" / "results").glob("learner_vs_floor*/summary.csv")):
        for r in csv.DictReader(path.open()):
            if r.get("qexp_stochastic_regret") not in (None, "", "nan"):
                pairs.add((r["env"], same(r["qexp_stochastic_regret"]), same(r["qexp_regret"])))
    return [float(stochastic) / float(nearest) for _, stochastic, nearest in pairs]


def test_theory_page_states_the_published_stochastic_over_nearest_floor_range():
    ratios = _stochastic_over_nearest_floor()
    text = " ".join((ROOT / "docs" / "theory.md").read_text().split())
    stated = (f"{min(ratios):.2f}x to {max(ratios):.2f}x the nearest one's ({len(ratios)} distinct "
              "pairs of means over seeds)")
    assert min(ratios) > 1 and stated in text, f"theory.md should say: {stated}"
