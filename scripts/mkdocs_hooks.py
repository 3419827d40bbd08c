"""MkDocs hooks (``hooks:`` in mkdocs.yml): the pages generated at build time.

- ``reference/cli/<command>.md``: each ``qbc`` command's own ``--help``, captured in-process
  (no network, no subprocess), one page per command in ``qbc.cli.COMMANDS``;
- ``reference/api/<module>.md``: one mkdocstrings page per module in :data:`API_MODULES`;
- ``results/index.md``: one row per results folder (any folder under ``docs/results`` holding a
  ``reference.json`` or a ``README.md``), with its headline, command, commit and date read from
  the folder's own files;
- ``results/<name>/index.md`` for a results folder without a README: its numbers, tables and
  plots; folders with a README get their plots and files appended to it when it does not
  show them.

The nav entries ``GENERATED-RESULTS``, ``GENERATED-CLI`` and ``GENERATED-API`` in mkdocs.yml are
replaced by the generated pages, so a new results folder or command appears without editing
mkdocs.yml.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"

#: Modules with an API reference page (title, module).
API_MODULES: tuple[tuple[str, str], ...] = (
    ("Quantizers", "qbc.quantizers"),
    ("Action tokenizer", "qbc.tokenizer"),
    ("Chunk tokenizers", "qbc.chunking"),
    ("Chunk execution", "qbc.chunking.execution"),
    ("Policies", "qbc.policy"),
    ("Training", "qbc.training"),
    ("Actors", "qbc.stepping.actor"),
    ("Experts", "qbc.agents"),
    ("Expert zoo", "qbc.agents.expert_zoo"),
    ("Expert choice", "qbc.data.expert_choice"),
    ("Environments", "qbc.envs"),
    ("Demonstrations", "qbc.data"),
    ("Collect", "qbc.data.collect"),
    ("DART", "qbc.data.dart"),
    ("DAgger", "qbc.interactive.dagger"),
    ("Rollouts", "qbc.rollout.coupled"),
    ("Rollout metrics", "qbc.rollout.metrics"),
    ("Growth and the floor", "qbc.rollout.growth"),
    ("Evaluation", "qbc.rollout.evaluate"),
    ("Evaluation inputs", "qbc.rollout.inputs"),
    ("Rollout report", "qbc.rollout.report"),
    ("Certificate", "qbc.certify.certificate"),
    ("Model-based deployment", "qbc.rollout.augment"),
    ("Sweeps", "qbc.sweep"),
    ("STE", "qbc.ste"),
    ("Compressive learning", "qbc.compressive"),
    ("Errors", "qbc.errors"),
)

_STATE: dict = {}


# --- results -----------------------------------------------------------------------------------

def result_folders() -> list[Path]:
    """Every results folder: a folder under docs/results with a reference.json or a README.md
    (the top-level index README of a group such as sweeps/ counts too), sorted."""
    found = {p.parent for p in RESULTS.rglob("reference.json")}
    found |= {p.parent for p in RESULTS.rglob("README.md")}
    found.discard(RESULTS)
    return sorted(found)


def _reference(folder: Path) -> dict:
    path = folder / "reference.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _readme_title(folder: Path) -> str | None:
    readme = folder / "README.md"
    if not readme.exists():
        return None
    match = re.search(r"^# (.+)$", readme.read_text(), re.M)
    return match.group(1).strip() if match else None


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def headline(folder: Path) -> str:
    """The result's headline: its README's "Targets" bullets when it has them (the
    learner-vs-floor reports), else its first line in bold (a verdict), else the first stored
    reference numbers."""
    readme = folder / "README.md"
    if readme.exists():
        match = re.search(r"^## Targets\s*$(.*?)(?=^## |\Z)", readme.read_text(), re.M | re.S)
        if match:
            bullets = [b.strip()[2:] for b in match.group(1).splitlines()
                       if b.strip().startswith("- ")]
            if bullets:
                return "; ".join(bullets)
        verdict = re.search(r"^\*\*.+$", readme.read_text(), re.M)
        if verdict:  # a report's bold verdict line (the chunking comparison's)
            return verdict.group(0).strip()
    values = _reference(folder).get("full", {}).get("values", {})
    if values:
        shown = [f"`{k}` = {_fmt(v['value'])}" for k, v in list(values.items())[:2]]
        more = f" (+{len(values) - 2} more checked)" if len(values) > 2 else ""
        return "; ".join(shown) + more
    title = _readme_title(folder)
    return title or "(no stored numbers)"


def _page_uri(folder: Path) -> str:
    rel = folder.relative_to(RESULTS.parent).as_posix()
    return f"{rel}/README.md" if (folder / "README.md").exists() else f"{rel}/index.md"


def results_index() -> str:
    lines = [
        "# Results",
        "",
        "Every published result, one row per folder of `docs/results/`, generated when the site",
        "is built from each folder's `reference.json` (the commands, commit and date of its full",
        "run, and the numbers `python scripts/reproduce_results.py` checks) and its README.",
        "A new folder appears here by itself.",
        "",
        "| result | headline | command | commit | date |",
        "|---|---|---|---|---|",
    ]
    for folder in result_folders():
        name = folder.relative_to(RESULTS).as_posix()
        full = _reference(folder).get("full", {})
        commands = "<br>".join(f"`{c}`" for c in full.get("commands", [])) or "—"
        link = Path(_page_uri(folder)).relative_to("results").as_posix()
        cells = [f"[{name}]({link})", headline(folder).replace("|", "\\|"),
                 commands.replace("|", "\\|"), full.get("commit", "—"), full.get("date", "—")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "How to re-run and check them: [Reproducing results]"
              "(../guide/robustness.md#published-results-and-how-to-check-them)."]
    return "\n".join(lines) + "\n"


def _extras(folder: Path, shown: str) -> str:
    """Plots not already shown in ``shown`` and the folder's other files, as Markdown."""
    out = []
    plots = [p for p in sorted(folder.glob("*.png")) if p.name not in shown]
    if plots:
        out += ["", "## Plots", ""]
        for p in plots:
            out += [f"![{p.stem}]({p.name})", ""]
    pages = [p for p in sorted(folder.glob("*.md")) if p.name not in ("README.md", "index.md")]
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix not in (".md", ".png")]
    if pages or files:
        out += ["", "## Files", ""]
        out += [f"- [{p.name}]({p.name})" for p in pages + files]
    full = _reference(folder).get("full", {})
    if full and "reference.json" not in shown:
        out += ["", f"Made at commit {full.get('commit')} on {full.get('date')} by "
                + ", ".join(f"`{c}`" for c in full.get("commands", [])) + "."]
    return "\n".join(out) + "\n"


def result_page(folder: Path) -> str:
    """The page of a results folder without a README."""
    name = folder.relative_to(RESULTS).as_posix()
    lines = [f"# {name}", "", f"Headline: {headline(folder)}", ""]
    for table in sorted(folder.glob("table.md")):
        lines += [table.read_text(), ""]
    return "\n".join(lines) + _extras(folder, "")


# --- CLI ---------------------------------------------------------------------------------------

def _slug(command: str) -> str:
    return command.replace(" ", "-")


def command_help(command: str) -> str:
    """``qbc COMMAND --help`` as the command prints it (80 columns, no colours)."""
    from qbc.cli import main

    buffer = io.StringIO()
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR", "TERM")}
    os.environ.update(COLUMNS="100", NO_COLOR="1", TERM="dumb")
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                main(command.split() + ["--help"])
            except SystemExit:
                pass
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip()


def cli_page(command: str) -> str:
    return (f"# qbc {command}\n\nGenerated from `qbc {command} --help` when the site is built.\n\n"
            f"```text\n{command_help(command)}\n```\n")


def cli_index(commands: list[str]) -> str:
    from qbc.cli import _load

    lines = ["# Command-line reference", "",
             "Every `qbc` command, each page generated from the command's own `--help`.", "",
             "| command | what it does |", "|---|---|"]
    for c in commands:
        lines.append(f"| [qbc {c}]({_slug(c)}.md) | {_load(c).help} |")
    lines += ["", "Flags mean the same in every command; see "
              "[Getting started](../../getting-started.md#flags)."]
    return "\n".join(lines) + "\n"


# --- API ---------------------------------------------------------------------------------------

def api_index() -> str:
    lines = ["# API reference", "", "Generated from the docstrings by mkdocstrings.", ""]
    lines += [f"- [{title}]({module}.md) — `{module}`" for title, module in API_MODULES]
    return "\n".join(lines) + "\n"


def api_page(title: str, module: str) -> str:
    return f"# {title}\n\n::: {module}\n"


# --- hooks -------------------------------------------------------------------------------------

def _replace(nav, marker: str, entries: list):
    if isinstance(nav, list):
        out = []
        for item in nav:
            if item == marker:
                out += entries
            else:
                out.append(_replace(item, marker, entries))
        return out
    if isinstance(nav, dict):
        return {k: _replace(v, marker, entries) for k, v in nav.items()}
    return nav


def _api_source_tree() -> str:
    """A temporary folder whose ``qbc/`` has the installed layout (``qbc.envs`` and
    ``qbc.agents`` live in envs/ and agents/ at the top of the repository; see pyproject's
    package-dir), a copy of the Python sources for mkdocstrings to read (Griffe does not follow
    symlinked folders)."""
    import atexit
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="qbc-api-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    only_python = shutil.ignore_patterns("__pycache__", "zoo", "*.pyc")
    shutil.copytree(REPO / "qbc", root / "qbc", ignore=only_python)
    for name in ("envs", "agents"):
        shutil.copytree(REPO / name, root / "qbc" / name, ignore=only_python)
    return str(root)


def on_config(config):
    from qbc.cli import COMMANDS

    plugin = config.plugins["mkdocstrings"]
    plugin.config.handlers.setdefault("python", {})["paths"] = [_api_source_tree()]
    # mkdocstrings made its handler in its own on_config, before this hook, with the default
    # paths: drop it so that the next use makes it again with the paths above.
    getattr(plugin.handlers, "_handlers", {}).pop("python", None)

    commands = sorted(COMMANDS)
    folders = result_folders()
    _STATE.update(commands=commands, folders=folders)
    results_nav = []
    for folder in folders:
        name = folder.relative_to(RESULTS).as_posix()
        extra = [p for p in sorted(folder.glob("*.md")) if p.name not in ("README.md", "index.md")]
        page = _page_uri(folder)
        if extra:
            rel = folder.relative_to(RESULTS.parent).as_posix()
            results_nav.append({name: [page] + [{p.stem: f"{rel}/{p.name}"} for p in extra]})
        else:
            results_nav.append({name: page})
    nav = config["nav"]
    nav = _replace(nav, "GENERATED-RESULTS", results_nav)
    nav = _replace(nav, "GENERATED-CLI",
                   [{f"qbc {c}": f"reference/cli/{_slug(c)}.md"} for c in commands])
    nav = _replace(nav, "GENERATED-API",
                   [{title: f"reference/api/{module}.md"} for title, module in API_MODULES])
    config["nav"] = nav
    return config


def on_files(files, config):
    generated = {"results/index.md": results_index(),
                 "reference/cli/index.md": cli_index(_STATE["commands"]),
                 "reference/api/index.md": api_index()}
    for command in _STATE["commands"]:
        generated[f"reference/cli/{_slug(command)}.md"] = cli_page(command)
    for title, module in API_MODULES:
        generated[f"reference/api/{module}.md"] = api_page(title, module)
    for folder in _STATE["folders"]:
        if not (folder / "README.md").exists():
            generated[_page_uri(folder)] = result_page(folder)
    for uri, content in generated.items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown, page, config, files):
    """A results README gets the plots and files it does not show itself."""
    uri = page.file.src_uri
    if uri.startswith("results/") and uri.endswith("/README.md"):
        folder = RESULTS.parent / Path(uri).parent
        if folder in _STATE.get("folders", ()):
            return markdown + _extras(folder, markdown)
    return markdown
