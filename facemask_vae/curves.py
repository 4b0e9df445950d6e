"""Per-epoch training curves of a run, read from its TensorBoard event files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from facemask_vae.metric_keys import CURVE_TAGS


def read_curves(
    run_dir: Path, tags: dict[str, dict[str, str]] = CURVE_TAGS
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per-epoch scalars of a run from its TensorBoard event files: {quantity: {stage: (epochs,
    values)}} for the ``tags`` given as {quantity: {stage: tag}}. The epoch of a point is
    Lightning's logged ``epoch`` scalar at that step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # per-file INFO lines

    dirs = sorted({p.parent for p in run_dir.rglob("events.out.tfevents.*")})
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for d in dirs:
        ea = EventAccumulator(str(d), size_guidance={"scalars": 0})
        ea.Reload()
        logged = set(ea.Tags().get("scalars", []))
        ep_steps, ep_vals = np.array([]), np.array([])
        if "epoch" in logged:
            ev = ea.Scalars("epoch")
            ep_steps = np.array([e.step for e in ev])
            ep_vals = np.array([e.value for e in ev])
            order = np.argsort(ep_steps, kind="stable")
            ep_steps, ep_vals = ep_steps[order], ep_vals[order]
        for q, stages in tags.items():
            for stage, tag in stages.items():
                if tag not in logged:
                    continue
                ev = ea.Scalars(tag)
                steps = np.array([e.step for e in ev])
                vals = np.array([e.value for e in ev], dtype=np.float64)
                if len(ep_steps):
                    j = np.clip(np.searchsorted(ep_steps, steps, side="right") - 1, 0, None)
                    epochs = ep_vals[j]
                else:
                    epochs = np.arange(len(vals), dtype=np.float64)
                # a resumed run logs an epoch twice: keep the last value per epoch
                _, last = np.unique(epochs[::-1], return_index=True)
                keep = np.sort(len(epochs) - 1 - last)
                curves.setdefault(q, {})[stage] = (epochs[keep], vals[keep])
    return curves
