"""The front door stays true: tables match their metrics.json, numbers are traced, links resolve."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import results_tables as rt  # noqa: E402
from results_spec import TABLES  # noqa: E402

PAGES = [ROOT / p for p in rt.PAGES]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a decimal or a percentage in prose: the kind of number a metric is reported in
MEASURED = re.compile(r"(?<![\w.-])(\d[\d,]*\.\d+|\d[\d,]*(?:\.\d+)?%)(?![\w.])")


def _prose(text: str) -> str:
    """The page without its code blocks, generated tables, inline code, links' targets."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = rt.BLOCK.sub("", text)
    text = re.sub(r"`[^`]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_tables_match_the_committed_reports(page):
    _, changed = rt.rewrite(page.read_text(), TABLES)
    assert not changed, f"stale tables {changed}: run python scripts/results_tables.py"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_number_in_the_prose_is_in_a_generated_table(page):
    text = page.read_text()
    tables = "\n".join(m.group(3) for m in rt.BLOCK.finditer(text))
    in_tables = set(MEASURED.findall(tables))
    loose = sorted(set(MEASURED.findall(_prose(text))) - in_tables)
    assert not loose, f"{page.name}: numbers not in any generated table of the page: {loose}"


def test_every_table_is_shown_once():
    names = [m.group(2) for p in PAGES for m in rt.BLOCK.finditer(p.read_text())]
    assert sorted(names) == sorted(TABLES), "a table is defined but not shown, or shown twice"


def test_a_missing_value_names_its_report_run_and_key():
    with pytest.raises(KeyError, match=r"ae_vs_vae/metrics\.json.*'ae'.*'no\.such'"):
        rt.One("ae_vs_vae/metrics.json", "ae", "no.such").text()
    with pytest.raises(KeyError, match="no run 'nobody'"):
        rt.One("ae_vs_vae/metrics.json", "nobody", "recon.psnr").text()


def test_a_changed_value_is_caught(tmp_path):
    """The check fails when a table on the page no longer says what its report says."""
    page = (ROOT / "docs" / "results.md").read_text()
    block = next(m for m in rt.BLOCK.finditer(page) if m.group(2) == "reconstruction")
    edited = page.replace(block.group(3), block.group(3).replace("29.41", "29.51", 1))
    assert edited != page
    assert rt.rewrite(edited, TABLES)[1] == ["reconstruction"]


def test_seeds_are_mean_and_sample_sd():
    cell = rt.Seeds((("samples_two_stage/metrics.json", "unet_sl01"),), "samples.fid_best")
    one = rt.value("samples_two_stage/metrics.json", "unet_sl01", "samples.fid_best")
    assert cell.values() == [one]
    three = TABLES["samplers"].rows[-1][1][1]
    assert three.text() == "115.2 ± 3.2"  # 118.706, 114.366, 112.459: sd with n - 1


def test_front_door_sizes():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 200, f"README.md has {len(readme)} lines; the front door keeps 200"
    first = next(i for i, line in enumerate(readme) if "<!-- table: headline -->" in line)
    assert first < 80, "the headline table must start within the README's first 80 lines"
    results = (ROOT / "docs" / "results.md").read_text().splitlines()
    assert len(results) <= 300, f"docs/results.md has {len(results)} lines; keep 300"


def _anchors(md: str) -> set[str]:
    out = set()
    for h in re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", md, flags=re.S), re.M):
        out.add(re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing = not file.exists()
        if missing or (
            anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text())
        ):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"
