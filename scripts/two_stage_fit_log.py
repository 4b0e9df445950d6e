"""Log the second-stage fit of eval's two_stage samplers epoch by epoch, on one run's codes:
loss, the posterior log-variance's range before its clamp, and how many values lie beyond it.

    FACEMASK_ROOT=".../Face Mask Dataset" python scripts/two_stage_fit_log.py <run dir>
    python scripts/two_stage_fit_log.py <run dir> --no-clamp    # what the fit does without it

The codes are those eval fits (``two_stage_all``: every level's posterior means on the training
split; the top latent's for a model without skip levels), with eval's default seed (0) and
``two_stage`` options. A fit that diverges stops with its message after the log.
"""

from __future__ import annotations

import argparse
import math
import os

import torch
from hydra.utils import instantiate

from facemask_vae.checkpoints import load_run
from facemask_vae.sampling import two_stage

CLAMP = two_stage.LOGVAR_RANGE  # counted against even when --no-clamp lifts it


def codes(run: str) -> torch.Tensor:
    """Every level's posterior means on the training split (N x sum(latent_sizes))."""
    r = load_run(run)
    if os.environ.get("FACEMASK_ROOT"):
        r.config.data.root = os.environ["FACEMASK_ROOT"]
    dm = instantiate(r.config.data)
    images, model = dm.dataset("train").images, r.model.eval()
    levels = len(model.latent_sizes)
    return torch.cat(
        [
            model.flatten_codes(model.encode_levels(dm.to_float(images[i : i + 250]))[:levels])
            for i in range(0, len(images), 250)
        ]
    )


class EpochLog:
    """Per epoch: mean loss, and the raw log-variance's min, max and count outside the clamp."""

    def __init__(self) -> None:
        self.epoch, self.rows = -1, []

    @torch.no_grad()
    def __call__(self, epoch: int, stage, x: torch.Tensor, loss: torch.Tensor) -> None:
        if epoch != self.epoch:
            self.flush()
            self.epoch, self.n, self.total = epoch, 0, 0.0
            self.lo, self.hi, self.beyond = math.inf, -math.inf, 0
        logvar = stage.encoder(x).chunk(2, dim=1)[1]  # deterministic: the fit is unchanged
        low, high = CLAMP
        self.n, self.total = self.n + len(x), self.total + float(loss) * len(x)
        self.lo, self.hi = min(self.lo, float(logvar.min())), max(self.hi, float(logvar.max()))
        self.beyond += int(((logvar < low) | (logvar > high)).sum())

    def flush(self) -> None:
        if self.epoch >= 0:
            row = (self.epoch + 1, self.total / self.n, self.lo, self.hi, self.beyond)
            self.rows.append(row)
            epoch, loss, lo, hi, beyond = row
            print(f"{epoch:5d}  {loss:12.1f}  {lo:10.2f}  {hi:10.2f}  {beyond:8d}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--no-clamp", action="store_true", help="fit without the log-variance clamp")
    args = ap.parse_args()
    z = codes(args.run)
    print(f"codes {tuple(z.shape)}, |z| <= {float(z.abs().max()):.1f}", flush=True)
    if args.no_clamp:
        two_stage.LOGVAR_RANGE = (-math.inf, math.inf)
    log = EpochLog()
    print(f"epoch          loss  logvar min  logvar max  beyond {list(CLAMP)}", flush=True)
    try:
        two_stage.fit_two_stage(z, seed=0, on_batch=log, **two_stage.DEFAULTS)
    finally:
        log.flush()


if __name__ == "__main__":
    main()
