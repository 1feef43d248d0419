"""The README and the guide in docs/ stay true to the code: their tables of keys and
options are generated from the schema (ABE_WRITE_DOCS=1 rewrites them), every number of
the returns table comes from its one source, every relative link resolves, and the
README stays short."""

import os
import re
from pathlib import Path

import pytest

from abe import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))


def _generated_block(path: Path, name: str, table: str) -> None:
    """The block between `<!-- NAME -->` and `<!-- /NAME -->` of `path` is `table`."""
    text = path.read_text()
    pattern = re.compile(rf"(<!-- {name}[^>]*-->\n)(.*?)(<!-- /{name} -->)", re.S)
    match = pattern.search(text)
    assert match, f"{path.name}: no <!-- {name} --> block"
    if os.environ.get("ABE_WRITE_DOCS") == "1":
        path.write_text(pattern.sub(lambda m: m.group(1) + table + m.group(3), text))
        return
    assert match.group(2) == table, (
        f"{path.relative_to(PROJECT_ROOT)}'s {name} differs from the code; "
        "rewrite it with ABE_WRITE_DOCS=1 .venv/bin/python -m pytest tests/unit/test_docs.py"
    )


def test_the_configuration_reference_is_the_schemas(make_cfg):
    from abe.core.schema import key_reference

    _generated_block(PROJECT_ROOT / "docs" / "configuration.md", "keys", key_reference(make_cfg().to_dict()))


def test_the_sweeper_options_table_is_the_sweepers():
    from abe.sweeps.optuna_sweeper import AbeOptunaSweeperConf, options_table

    _generated_block(PROJECT_ROOT / "docs" / "sweeps.md", "sweeper options", options_table(AbeOptunaSweeperConf))


def test_the_pbt_options_table_is_the_pbt_sweepers():
    from abe.sweeps.optuna_sweeper import options_table
    from abe.sweeps.pbt_sweeper import AbePbtSweeperConf

    _generated_block(PROJECT_ROOT / "docs" / "sweeps.md", "pbt options", options_table(AbePbtSweeperConf))


def test_the_returns_table_has_one_source():
    table = (PROJECT_ROOT / "bench" / "results" / "returns.md").read_text()  # bench/returns.py writes it
    for path in (README, *(PROJECT_ROOT / "docs" / name for name in ("environments.md", "benchmarks.md"))):
        _generated_block(path, "returns table", table)


def test_the_pbt_benchmark_table_has_one_source():
    table = (PROJECT_ROOT / "bench" / "results" / "pbt_vs_tpe.md").read_text()  # bench/pbt_vs_tpe.py writes it
    for path in (README, PROJECT_ROOT / "docs" / "benchmarks.md"):
        _generated_block(path, "pbt table", table)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    markdown = re.sub(r"```.*?```", "", markdown, flags=re.S)
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text())):
            broken.append(target)
    assert not broken, f"{page.name}: links that lead nowhere: {broken}"


def test_the_readme_is_a_ten_minute_read():
    assert len(README.read_text().splitlines()) <= 300
