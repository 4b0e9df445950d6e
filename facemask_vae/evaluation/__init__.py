"""The side-by-side evaluation behind ``eval.py``: every section of the study, for every run.

:func:`evaluate` loads the runs (:mod:`facemask_vae.checkpoints`), the data and the cached
domain CNN (:mod:`facemask_vae.classifier`) into a :class:`~.context.Context`, runs the sections
below (one module each), and writes ``metrics.json``, ``report.md`` (:mod:`.output`) and the
figures (:mod:`facemask_vae.report`) to the output dir:

0. the models compared (:mod:`.models`),
1. reconstruction (MSE, PSNR, SSIM; negative ELBO and IWAE bound for VAEs; :mod:`.reconstruction`),
2. random samples (domain Frechet distance, CNN confidence and class balance; FID/KID optional;
   :mod:`.samples`),
3. latent space (t-SNE, k-NN accuracy, silhouette; :mod:`.latents`),
4. interpolation smoothness (pixel and CNN-feature space; :mod:`.interpolation`),
5. mask classification probes on latents (with pixel and supervised-CNN references; :mod:`.probes`),
5b. the linear probe and the supervised CNN on shifted test images (zoom out, off centre, blur,
    JPEG, colour, grayscale; :mod:`.shifts`),
6. training curves from TensorBoard events (:mod:`.training`),
7. what the U-Net skips carry (per-level KL, active units, swap test; :mod:`.skips`),
8. editing: a mask put on and taken off, and samples of one class (:mod:`.editing`).

What several sections read (latents, per-level KLs, the test pairs) comes from the cached
accessors of :mod:`.shared`, computed on first use: any section runs alone, in any order.
Every random draw comes from generators seeded by ``cfg.seed``: the same runs, data and seed
give the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from facemask_vae.config import ConfigError
from facemask_vae.evaluation.context import REFERENCE, Context, load_everything, timed
from facemask_vae.evaluation.editing import check_config as check_editing_config
from facemask_vae.evaluation.editing import section_editing
from facemask_vae.evaluation.interpolation import section_interpolation
from facemask_vae.evaluation.latents import section_latent_space
from facemask_vae.evaluation.models import section_models
from facemask_vae.evaluation.output import write_metrics, write_report
from facemask_vae.evaluation.probes import section_probes
from facemask_vae.evaluation.reconstruction import section_reconstruction
from facemask_vae.evaluation.sample_settings import check_config as check_sample_config
from facemask_vae.evaluation.samples import section_samples
from facemask_vae.evaluation.shared import interpolation_pairs
from facemask_vae.evaluation.shifts import probe_augment, section_shifts, shift_names
from facemask_vae.evaluation.skips import section_skips, swap_shares
from facemask_vae.evaluation.training import section_training

__all__ = [
    "REFERENCE",
    "SECTIONS",
    "Context",
    "evaluate",
    "interpolation_pairs",
    "load_everything",
    "section_editing",
    "section_interpolation",
    "section_latent_space",
    "section_models",
    "section_probes",
    "section_reconstruction",
    "section_samples",
    "section_shifts",
    "section_skips",
    "section_training",
    "selected_sections",
    "swap_shares",
]

#: The sections in the order they run and appear in the report: (key, heading, function).
SECTIONS: list[tuple[str, str, Callable[[Context], None]]] = [
    ("models", "Models", section_models),
    ("reconstruction", "1. Reconstruction", section_reconstruction),
    ("samples", "2. Random samples", section_samples),
    ("latent", "3. Latent space", section_latent_space),
    ("interpolation", "4. Latent smoothness (interpolation)", section_interpolation),
    ("probes", "5. Classification from latents", section_probes),
    ("shifts", "5b. Probes under distribution shift", section_shifts),
    ("training", "6. Training curves", section_training),
    ("skips", "7. What the latent carries", section_skips),
    ("editing", "8. Editing: mask on, mask off", section_editing),
]


#: what ``sections=default`` leaves out: editing takes minutes of its own (section 8)
NOT_DEFAULT = ("editing",)


def selected_sections(cfg: Any) -> list[tuple[str, str, Callable[[Context], None]]]:
    """The configured ``sections`` (``default``: all but :data:`NOT_DEFAULT`; ``all``; or a list
    of keys of :data:`SECTIONS`), in report order; the models table always comes first."""
    want = cfg.get("sections", "default")
    keys = [k for k, _, _ in SECTIONS]
    if want == "all":
        return list(SECTIONS)
    if want == "default" or want is None:
        return [sec for sec in SECTIONS if sec[0] not in NOT_DEFAULT]
    names = [str(want)] if isinstance(want, str) else [str(w) for w in want]
    bad = [n for n in names if n not in keys]
    if bad or not names:
        raise ConfigError(
            f"sections must be 'default', 'all' or a non-empty list of {keys}, got {names}; "
            "e.g. sections=[samples] or sections=[reconstruction,samples]"
        )
    return [sec for sec in SECTIONS if sec[0] == "models" or sec[0] in names]


def evaluate(
    cfg: DictConfig, output_dir: str | Path | None = None, command: str = ""
) -> dict[str, Any]:
    """Run the configured sections for the configured runs; write report.md, metrics.json and
    figures.

    Returns {"report", "metrics", "output_dir", "values"} (paths as strings, values per column).
    """
    sections = selected_sections(cfg)
    out_dir = Path(output_dir or cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_sample_config(cfg)
    check_editing_config(cfg)
    shift_names(cfg)  # unknown shifts fail before anything is loaded
    probe_augment(cfg)
    torch.manual_seed(int(cfg.seed))
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    ctx = load_everything(cfg, out_dir)
    ctx.timings["setup (runs, data, CNN)"] = round(time.perf_counter() - t0, 2)
    tqdm.write(f"[eval] setup: {time.perf_counter() - t0:.1f} s")
    bar = tqdm(sections, desc="eval", unit="section", disable=None)
    for key, _title, fn in bar:
        bar.set_postfix_str(key)
        if key == "models":
            fn(ctx)
            continue
        with timed(ctx, key):
            fn(ctx)
    bar.close()
    ctx.timings["total"] = round(time.perf_counter() - t_all, 2)
    report = write_report(ctx, command, [(key, title) for key, title, _ in sections])
    metrics = write_metrics(ctx, command)
    return {
        "report": str(report),
        "metrics": str(metrics),
        "output_dir": str(out_dir),
        "values": ctx.values,
    }
