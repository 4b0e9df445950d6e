"""The README's figure: test faces, each model's reconstructions of them, and its best samples.

    python scripts/front_figure.py AE=<run dir> VAE=<run dir> "U-Net VAE=<run dir>" \
        --out docs/results/headline/front.png

Uses only the public API: `load_run`, `run.model.reconstruct` and `run.sample` (the run's own
sampler at its temperature). The test faces are the first run's test split, a seeded choice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from hydra.utils import instantiate
from torchvision.utils import make_grid

from facemask_vae.checkpoints import load_run


def _strip(images: torch.Tensor, ncol: int) -> torch.Tensor:
    """n x 3 x S x S in [0, 1] -> one H x W x 3 image, ncol faces a row."""
    return make_grid(images.float().cpu().clamp(0, 1), nrow=ncol, padding=1, pad_value=1.0)


def front_figure(runs: dict[str, str], out: Path, n: int = 6, seed: int = 0) -> Path:
    """Write the figure: a row of test faces, then per model its reconstructions and samples."""
    loaded = {name: load_run(path) for name, path in runs.items()}
    first = next(iter(loaded.values()))
    dm = instantiate(first.config.data)
    test = dm.dataset("test")
    g = torch.Generator().manual_seed(seed)
    # half with a mask, half without, so both classes show
    picks = []
    for label in (1, 0):
        idx = torch.nonzero(test.labels == label).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[: n // 2]])
    x = dm.to_float(test.images[torch.cat(picks)])
    rows = [("test faces", _strip(x, n), None)]
    with torch.no_grad():
        for name, run in loaded.items():
            recon = run.model.reconstruct(x.to(run.model.device))
            samples = run.sample(n, seed=seed)
            rows.append((name, _strip(recon, n), _strip(samples, n)))
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * n * 0.85, len(rows) * 0.95 + 0.4))
    for r, (name, left, right) in enumerate(rows):
        for c, img in enumerate((left, right)):
            ax = axes[r, c]
            ax.axis("off")
            if img is not None:
                ax.imshow(img.permute(1, 2, 0).numpy())
        if r == 0:
            axes[r, 0].set_title(name, loc="left", fontsize=9)
        else:
            axes[r, 0].set_title(f"{name}: reconstructions", loc="left", fontsize=9)
            axes[r, 1].set_title(f"{name}: samples, its own sampler", loc="left", fontsize=9)
    fig.tight_layout(pad=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="NAME=<run dir>, in figure order")
    p.add_argument("--out", type=Path, default=Path("docs/results/headline/front.png"))
    p.add_argument("--n", type=int, default=6, help="faces per row (even)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    runs = dict(item.split("=", 1) for item in args.runs)
    print(front_figure(runs, args.out, args.n, args.seed))


if __name__ == "__main__":
    main()
