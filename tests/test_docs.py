"""The documentation says what the code does: the README's quantizer table is the registry, every
module is on the module map, and every reference points at a file inside this repository."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section(text: str, heading: str) -> str:
    """The body of the markdown section whose heading line starts with ``heading``."""
    match = re.search(rf"^#+ {re.escape(heading)}.*?$(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"README.md has no section {heading!r}"
    return match.group(1)


def readme_quantizer_names() -> list[str]:
    """Names in the first column of the README's quantizer table (`` `name` `` cells)."""
    body = _section((ROOT / "README.md").read_text(), "Quantizers")
    return re.findall(r"^\| `([^`]+)` \|", body, re.M)


def test_theorem6_is_registered_on_package_import():
    # A fresh interpreter: other tests may already have imported qbc.quantizers.construction.
    code = ("import qbc.quantizers as q; q.make_quantizer('theorem6'); "
            "print(','.join(q.available_quantizers()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "theorem6" in out.stdout.split(",")


def test_readme_quantizer_table_is_the_registry():
    from qbc.quantizers import available_quantizers

    names = readme_quantizer_names()
    assert len(names) == len(set(names)), f"duplicate rows in README's table: {names}"
    assert sorted(names) == sorted(available_quantizers())


def test_readme_table_parser_reads_rows():
    # The comparison above is only as good as the parser: it must find the rows it claims to.
    names = readme_quantizer_names()
    assert {"uniform", "smooth", "kmeans"} <= set(names)
