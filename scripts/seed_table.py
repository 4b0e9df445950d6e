"""Mean +- std over seeds of the test metrics each training run logged, as a Markdown table.

    python scripts/seed_table.py logs/study/ae_vs_vae/seed42 logs/study/ae_vs_vae/seed1 ...

Every argument is a sweep directory or a single run directory; runs are grouped by the
``run_name`` in their ``config.yaml`` (``<model>-<anneal>``), one row per name. Reads the
``test/*`` scalars ``train.py`` logs after testing the best checkpoint, from the TensorBoard
events, so it needs no model and no data. With ``--retest`` it runs each best checkpoint's test
pass again with the current code instead (it needs the data), for runs logged before a test
metric was fixed.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from facemask_vae import metric_keys as K

#: the table's columns, in order: test metrics logged by train.py
METRICS = tuple(K.key(K.TEST, m) for m in (K.ELBO, K.RECON, K.KL, K.PSNR, K.SSIM, K.LOSS))
#: the prefix of every test metric, ``test/``
TEST_PREFIX = K.key(K.TEST, "")


def test_metrics(run_dir: Path) -> dict[str, float]:
    """The last value of every ``test/*`` scalar in a run's TensorBoard events."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    return {t: acc.Scalars(t)[-1].value for t in tags if t.startswith(TEST_PREFIX)}


def runs_in(dirs: list[Path]) -> list[Path]:
    """The run directories (those with a config.yaml) among ``dirs`` and directly inside them."""
    runs = []
    for d in dirs:
        if (d / "config.yaml").is_file():
            runs.append(d)
        else:
            runs += sorted(r for r in d.iterdir() if (r / "config.yaml").is_file())
    if not runs:
        raise SystemExit(f"no run directories (with a config.yaml) in {[str(d) for d in dirs]}")
    return runs


def _fmt(x: float, like: float | None = None) -> str:
    """Nats with thousands separators and no decimals; small values (PSNR, SSIM) with 2-3."""
    ref = abs(like if like is not None else x)
    if ref >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}" if ref >= 1 else f"{x:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories")
    p.add_argument("--json", type=Path, default=None, help="also write the raw values here")
    p.add_argument(
        "--retest", action="store_true", help="re-run the test pass of each best checkpoint"
    )
    args = p.parse_args()
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    read = test_metrics
    if args.retest:
        from facemask_vae.training import retest_checkpoint as read
    for run in runs_in(args.dirs):
        name = str(OmegaConf.load(run / "config.yaml").run_name)
        for k, v in read(run).items():
            values[name][k].append(v)
    cols = [m for m in METRICS if any(m in v for v in values.values())]
    print(f"| run | seeds | {' | '.join(c.removeprefix(TEST_PREFIX) for c in cols)} |")
    print(f"|---|---:|{'---:|' * len(cols)}")
    for name, vals in values.items():
        n = max(len(v) for v in vals.values())
        cells = []
        for c in cols:
            xs = vals.get(c, [])
            if not xs:
                cells.append("-")
            elif len(xs) == 1:
                cells.append(_fmt(xs[0]))
            else:
                mean, std = statistics.mean(xs), statistics.stdev(xs)
                cells.append(f"{_fmt(mean)} ± {_fmt(std, like=mean)}")
        print(f"| {name} | {n} | {' | '.join(cells)} |")
    if args.json:
        args.json.write_text(json.dumps({k: dict(v) for k, v in values.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
