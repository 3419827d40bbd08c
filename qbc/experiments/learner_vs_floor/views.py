"""The common-tokenizer view of a finished learner-vs-floor folder: each DART and DAgger row
beside the reference floor (the quantized expert through plain BC's tokenizer, fitted on the clean
demonstrations) as well as its own tokenizer's floor, computed from the folder's results.csv
(per-seed rows of every method, BC's floor among them) without re-running anything. Pages made
before the reference floor was kept (``--dagger-tokenizer refit`` ones, where DART and DAgger
refit their tokenizers) compare each row with its own floor only; this adds the other view as one
section of their README.md, and a sentence above each of their tables saying what it compares,
and leaves the rest of the page, results.csv and summary.csv as they are.

Entry point: ``python scripts/learner_vs_floor_view.py --folders DIR ...``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbc.errors import CorruptFileError
from qbc.experiments.learner_vs_floor.report import (
    OWN_FLOOR_SCOPE,
    common_tokenizer_view,
    with_scope_above_tables,
    with_section,
)
from qbc.experiments.learner_vs_floor.summary import summarise
from qbc.infra.files import atomic_write_text, read_csv_rows
from qbc.infra.progress import Log, silent

#: Columns of results.csv that hold text; every other one is a number ('nan' where missing).
TEXT_FIELDS = ("env", "quantizer", "method", "decode")

#: Columns of results.csv that hold integers.
INT_FIELDS = ("seed", "expert_labels")

#: Columns the view reads (a page made before qexp_stochastic_regret was recorded lacks it).
NEEDED_FIELDS = (*TEXT_FIELDS, *INT_FIELDS, "expert_return", "regret", "diverged",
                 "qexp_regret", "qexp_diverged")

#: How the view says it was made.
COMMAND = "`python scripts/learner_vs_floor_view.py --folders DIR`"


@dataclass
class ViewConfig:
    """Add the common-tokenizer view (DART and DAgger against plain BC's tokenizer's floor) to
    finished learner-vs-floor folders, from their results.csv; nothing is re-run."""

    folders: tuple[Path, ...] = ()
    """result folders, each with results.csv and README.md."""
    reference: Path | None = None
    """a finished folder of the same comparison (same BC settings) whose plain BC rows give the
    reference floor where a folder has none (``--methods dart``), matched by env, quantizer and
    seed; a group whose seeds it does not all cover gets none. The view names it."""


def read_results(path: Path) -> list[dict[str, Any]]:
    """results.csv as the rows :func:`summarise` takes: text fields kept, the seed and the
    expert labels ints, every other field a float. A damaged table (binary, cut mid-row, a
    missing column, a field that is not what the comparison writes) is a CorruptFileError
    naming the file, the line and the field."""
    raw = read_csv_rows(path, "results table", NEEDED_FIELDS)
    if not raw:
        raise CorruptFileError(f"{path} has no rows")
    return [_parsed(r, path, line) for line, r in enumerate(raw, 2)]


def _parsed(raw: dict[str, str], path: Path, line: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            if k in TEXT_FIELDS:
                if not v or not v.isprintable():
                    raise ValueError
                row[k] = v
            else:
                row[k] = int(v) if k in INT_FIELDS else float(v or math.nan)
        except ValueError:
            raise CorruptFileError(f"results table {str(path)!r} line {line}: {k} {v[:40]!r} "
                                   "is not what the comparison writes; it was damaged: "
                                   "restore it or re-create it") from None
    return row


def borrowed_bc_rows(rows: list[dict[str, Any]], reference: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """The plain BC rows of ``reference`` for each (env, quantizer) that has none in ``rows``,
    where ``reference`` has every seed of that group (else none for it)."""
    borrowed = []
    for env, q in {(r["env"], r["quantizer"]) for r in rows} - {
            (r["env"], r["quantizer"]) for r in rows if r["method"] == "bc"}:
        seeds = {r["seed"] for r in rows if (r["env"], r["quantizer"]) == (env, q)}
        bc = [r for r in reference if r["method"] == "bc" and r["env"] == env
              and r["quantizer"] == q and r["seed"] in seeds]
        if {r["seed"] for r in bc} == seeds:
            borrowed += bc
    return borrowed


def add_common_view(folder: Path, reference: Path | None = None) -> Path:
    """Write (or rewrite) the common-tokenizer section of ``folder``/README.md, with a sentence
    above each of the page's own tables saying what they compare; its path. ``reference``: see
    :class:`ViewConfig`."""
    return atomic_write_text(*viewed_readme(folder, reference))


def viewed_readme(folder: Path, reference: Path | None = None) -> tuple[Path, str]:
    """``folder``'s README.md and its text with the common-tokenizer section (nothing
    written); a README.md that is not UTF-8 text is a CorruptFileError."""
    rows = read_results(folder / "results.csv")
    command, note = COMMAND, None
    if reference is not None:
        borrowed = borrowed_bc_rows(rows, read_results(Path(reference) / "results.csv"))
        command = COMMAND.replace("DIR`", f"DIR --reference {reference}`")
        groups = sorted({f"{r['env']} {r['quantizer']}" for r in borrowed})
        note = (f"The reference floors of {', '.join(groups)} are the plain BC rows (same"
                f" seeds) of `{reference}/results.csv`, a separate run whose BC settings match"
                " this page's; this folder ran no BC. BC's floor depends on its demonstrations,"
                " its training seed (which draws the training split its tokenizer is fitted on)"
                " and the evaluation seeds, not on the rest of training (per seed it is the same"
                " in every two result folders here that ran BC on the same env and seeds)."
                if borrowed else f"`{reference}/results.csv` lacks plain BC rows for some of this"
                " folder's seeds: no reference floor is taken from it.")
        rows += borrowed
    section = common_tokenizer_view(summarise(rows), command)
    section += ["", note] if note else []
    readme = folder / "README.md"
    try:
        text = readme.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError(f"{readme} is not UTF-8 text; restore it") from None
    return readme, with_section(with_scope_above_tables(text, OWN_FLOOR_SCOPE), section)


def run_view(cfg: ViewConfig, log: Log = silent) -> None:
    """:func:`add_common_view` for every folder of ``cfg``: every page is made before any is
    written, so a folder that is refused leaves the others as they were."""
    pages = [viewed_readme(Path(folder), cfg.reference) for folder in cfg.folders]
    for readme, text in pages:
        log(f"wrote {atomic_write_text(readme, text)}")
