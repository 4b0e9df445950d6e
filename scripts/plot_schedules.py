"""Plot every open-loop annealing schedule of conf/anneal/ over one run, as in the study.

    python scripts/plot_schedules.py --epochs 10 --steps-per-epoch 79 --out docs/anneal_schedules.png

Each curve is the schedule exactly as its config builds it (the same pure function the callback
calls at every step). The controlled schedule is a feedback loop on the training KL, so it has no
curve without a run; its beta over a real run is in the study's training curves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from hydra.utils import instantiate
from omegaconf import OmegaConf

from facemask_vae.annealing import KLAnnealing
from facemask_vae.config import CONF_DIR


def schedule_curves(epochs: int, steps_per_epoch: int) -> dict[str, list[float]]:
    """beta at every step of a run, for each open-loop config in conf/anneal/."""
    total = epochs * steps_per_epoch
    curves = {}
    for path in sorted((CONF_DIR / "anneal").glob("*.yaml")):
        cb = instantiate(OmegaConf.load(path))
        if type(cb) is not KLAnnealing:
            continue
        schedule = cb.schedule_for(steps_per_epoch)
        curves[f"anneal={path.stem}"] = [schedule(s, total) for s in range(total)]
    return curves


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=79)
    p.add_argument("--out", type=Path, default=Path("docs/anneal_schedules.png"))
    args = p.parse_args()
    curves = schedule_curves(args.epochs, args.steps_per_epoch)
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    for name, ys in curves.items():
        ax.plot(range(len(ys)), ys, label=name, lw=1.6)
    ax.set_xlabel(f"step ({args.epochs} epochs x {args.steps_per_epoch} steps)")
    ax.set_ylabel("beta")
    ax.set_title("KL annealing schedules as configured (conf/anneal/)", fontsize=10)
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
