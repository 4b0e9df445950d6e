"""Per-module mutation scores from mutmut 3's result files (a benchmark, not CI).

Reads ``mutants/<path>.meta`` (JSON written by ``mutmut run``: ``exit_code_by_key`` maps each
mutant, named ``module.x_function__mutmut_N`` or ``module.xǁClassǁmethod__mutmut_N``, to the exit
code of its test run, ``durations_by_key`` to the seconds it took) and prints one row per mutated
module: killed / (killed + survived), the other outcomes and the mean seconds per mutant run.

networks.py and models/vae.py are mutated whole (mutmut 3 cannot mutate part of a file), but
only part of each is in scope: networks.py's latent parts and vae.py's IWAE weights (the
module-level ``importance_log_weights``, which was ``iwae.py``); their rows count only the
functions matched by ``PARTS``. The KL and free-bits functions that were in ``losses.py`` are in
``gaussian.py``, which is scored whole.

Usage, from the repository root after ``mutmut run`` (``scripts/mutation.sh`` calls it)::

    python scripts/mutation_report.py [--survivors] [--mutants-dir mutants]
    python scripts/mutation_report.py --globs   # the in-scope mutant names, for mutmut run
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from mutmut.stats import status_by_exit_code

SEP = "\u01c1"  # mutmut's class separator in mangled names: x<SEP>Class<SEP>method
#: modules scored on part of their functions only: path -> (label, patterns on the mangled name)
PARTS: dict[str, tuple[str, list[str]]] = {
    "facemask_vae/models/networks.py": (
        "models/networks.py (latent parts)",
        [
            f"x{SEP}VariationalSkip{SEP}*",
            f"x{SEP}Decoder{SEP}_variational_skip",
            f"x{SEP}Decoder{SEP}skip_latent_sizes",
            f"x{SEP}Decoder{SEP}skip_latent_shapes",
        ],
    ),
    "facemask_vae/models/vae.py": (
        "models/vae.py (importance_log_weights)",
        ["x_importance_log_weights"],
    ),
}
#: outcomes with their own column; everything else (not checked, segfault, ...) is "other"
COLUMNS = ("killed", "survived", "timeout", "no tests", "suspicious")


@dataclass
class ModuleResult:
    """The outcomes of one module's mutants in scope."""

    label: str
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    out_of_scope: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def score(self) -> float | None:
        scored = self.counts["killed"] + self.counts["survived"]
        return self.counts["killed"] / scored if scored else None

    @property
    def other(self) -> int:
        return self.total - sum(self.counts[c] for c in COLUMNS)


def function_of(mutant: str) -> str:
    """The mangled function name of a mutant key: ``pkg.mod.x_f__mutmut_3`` -> ``x_f``."""
    return mutant.partition("__mutmut_")[0].rpartition(".")[2]


def scope_globs(pyproject: Path = Path("pyproject.toml")) -> list[str]:
    """``mutmut run`` name globs for the in-scope mutants of ``[tool.mutmut] only_mutate``; a
    listed file that does not exist (moved or deleted) stops with its name."""
    paths = tomllib.loads(pyproject.read_text())["tool"]["mutmut"]["only_mutate"]
    missing = [p for p in paths if not (pyproject.parent / p).is_file()]
    if missing:
        raise SystemExit(f"{pyproject}: [tool.mutmut] only_mutate lists missing files {missing}")
    globs = []
    for path in paths:
        module = path.removesuffix(".py").replace("/", ".")
        patterns = PARTS[path][1] if path in PARTS else ["*"]
        # also matches the function's own name, which selects the tests of the clean run
        globs += [f"{module}.{p.rstrip('*')}*" for p in patterns]
    return globs


def read_module(meta: Path, source: str) -> ModuleResult:
    """Tally one ``.meta`` file, keeping only the functions in scope for ``source``."""
    data = json.loads(meta.read_text())
    label, patterns = PARTS.get(source, (source.removeprefix("facemask_vae/"), ["*"]))
    result = ModuleResult(label)
    durations = data.get("durations_by_key", {})
    for mutant, code in data["exit_code_by_key"].items():
        if not any(fnmatch(function_of(mutant), p) for p in patterns):
            result.out_of_scope += 1
            continue
        status = status_by_exit_code[code]
        result.counts[status] += 1
        if status == "survived":
            result.survivors.append(mutant)
        if mutant in durations:
            result.durations.append(float(durations[mutant]))
    return result


def format_table(results: list[ModuleResult]) -> str:
    """A fixed-width table with one row per module and a total row."""
    total = ModuleResult("total")
    for r in results:
        total.counts.update(r.counts)
        total.durations.extend(r.durations)
    head = ("module", "mutants", *COLUMNS, "other", "score", "s/mutant")
    rows = [head]
    for r in [*results, total]:
        score = "n/a" if r.score is None else f"{r.score:.1%}"
        mean = f"{sum(r.durations) / len(r.durations):.1f}" if r.durations else "-"
        rows.append(
            (r.label, str(r.total), *(str(r.counts[c]) for c in COLUMNS), str(r.other), score, mean)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    rule = "-" * len(lines[0])
    return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants-dir", type=Path, default=Path("mutants"))
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    parser.add_argument(
        "--globs", action="store_true", help="print the in-scope mutant name globs and exit"
    )
    args = parser.parse_args(argv)
    if args.globs:
        print("\n".join(scope_globs()))
        return 0
    metas = sorted(args.mutants_dir.rglob("*.py.meta"))
    if not metas:
        print(f"no mutmut results under {args.mutants_dir}/: run mutmut first", file=sys.stderr)
        return 1
    results = []
    for meta in metas:
        source = meta.relative_to(args.mutants_dir).as_posix().removesuffix(".meta")
        results.append(read_module(meta, source))
    print(format_table(results))
    print("score = killed / (killed + survived); other = not checked, segfault, skipped, ...")
    for r in results:
        if r.out_of_scope:
            print(f"{r.label}: {r.out_of_scope} mutants outside the scored parts not counted")
    if args.survivors:
        for r in results:
            for name in r.survivors:
                print(f"survived: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
