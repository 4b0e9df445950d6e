"""Write the results tables of README.md and docs/ from the committed metrics.json files.

Every table sits between `<!-- table: NAME -->` and `<!-- /table -->` and is rewritten from the
reports under docs/results/, so a number on those pages cannot drift from its source:

    python scripts/results_tables.py            # rewrite the tables in place
    python scripts/results_tables.py --check    # exit 1 and name the tables that differ

The table definitions live in scripts/results_spec.py; tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
PAGES = ("README.md", "docs/results.md", "docs/longer_training.md")
BLOCK = re.compile(r"(<!-- table: ([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.S)


@cache
def _read(file: str) -> dict:
    """A committed JSON file under docs/results/, read once."""
    return json.loads((RESULTS / file).read_text())


def _load(file: str) -> dict:
    """A report's metrics ({run: {key: value}}) or a seeds file ({run: {key: [values]}})."""
    data = _read(file)
    return data.get("metrics", data)


def value(file: str, run: str, key: str) -> float | str | list:
    """One entry of a committed report, with a message naming what is missing."""
    metrics = _load(file)
    if run not in metrics:
        raise KeyError(f"docs/results/{file} has no run {run!r}; it has {sorted(metrics)}")
    if key not in metrics[run]:
        raise KeyError(f"docs/results/{file}: run {run!r} has no {key!r}")
    return metrics[run][key]


@dataclass(frozen=True)
class One:
    """One value of one report, formatted (fmt: a format spec, e.g. '.2f', '.0%', ',.0f')."""

    file: str
    run: str
    key: str
    fmt: str = ".3f"
    scale: float = 1.0

    def text(self) -> str:
        v = value(self.file, self.run, self.key)
        return v if isinstance(v, str) else format(v * self.scale, self.fmt)


@dataclass(frozen=True)
class Row:
    """One value of a row of a report's table (``tables.<table>`` in metrics.json): the row
    whose entries equal ``where``'s, e.g. (("model", "ae"), ("strength", 1.0))."""

    file: str
    table: str
    where: tuple[tuple[str, object], ...]
    key: str
    fmt: str = ".3f"

    def text(self) -> str:
        rows = _read(self.file).get("tables", {}).get(self.table)
        if rows is None:
            raise KeyError(f"docs/results/{self.file} has no table {self.table!r}")
        hits = [r for r in rows if all(r.get(k) == v for k, v in self.where)]
        if len(hits) != 1:
            raise KeyError(
                f"docs/results/{self.file}: {len(hits)} rows of {self.table!r} match {self.where}"
            )
        return format(hits[0][self.key], self.fmt)


@dataclass(frozen=True)
class Seeds:
    """Mean ± sd (n - 1) over seeds: one (file, run) per seed, or a seeds file's list of values."""

    sources: tuple[tuple[str, str], ...]
    key: str
    fmt: str = ".1f"
    scale: float = 1.0

    def values(self) -> list[float]:
        out: list[float] = []
        for file, run in self.sources:
            v = value(file, run, self.key)
            out.extend(v if isinstance(v, list) else [v])
        return [x * self.scale for x in out]

    def text(self) -> str:
        vs = self.values()
        return f"{format(statistics.mean(vs), self.fmt)} ± {format(statistics.stdev(vs), self.fmt)}"


@dataclass(frozen=True)
class Pair:
    """Two cells in one, "a / b": e.g. one setting measured in two directions."""

    a: One | Row
    b: One | Row

    def text(self) -> str:
        return f"{self.a.text()} / {self.b.text()}"


@dataclass(frozen=True)
class Text:
    """A fixed cell: a label or a dash, never a measured number."""

    text_: str = "–"

    def text(self) -> str:
        return self.text_


@dataclass(frozen=True)
class Table:
    """A markdown table: a header row and rows of a label and one cell per column."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, tuple], ...]
    align: str = "l"  # the first column's alignment; the others are right-aligned

    def render(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |"]
        lines.append("|" + "---|" + "---:|" * (len(self.header) - 1))
        for label, cells in self.rows:
            lines.append("| " + " | ".join([label, *(c.text() for c in cells)]) + " |")
        return "\n".join(lines) + "\n"


def rewrite(text: str, tables: dict[str, Table]) -> tuple[str, list[str]]:
    """The page with every table block regenerated, and the names of the blocks that changed."""
    changed: list[str] = []

    def fill(m: re.Match) -> str:
        name = m.group(2)
        if name not in tables:
            raise KeyError(f"table {name!r} is not defined in scripts/results_spec.py")
        new = tables[name].render()
        if new != m.group(3):
            changed.append(name)
        return m.group(1) + new + m.group(4)

    return BLOCK.sub(fill, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report tables that differ")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "scripts"))
    from results_spec import TABLES

    stale = []
    for page in PAGES:
        path = ROOT / page
        new, changed = rewrite(path.read_text(), TABLES)
        stale += [f"{page}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(new)
    if stale:
        verb = "differs from" if args.check else "rewritten from"
        print("\n".join(f"{s} {verb} docs/results/" for s in stale))
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
