"""Same numbers before and after a refactor: fixed-seed tiny runs of every model, then eval.

Trains every model (and the schedules and optimiser options that take their own code paths) for
two epochs on 32 px synthetic faces, on the CPU in float32 with one thread, and writes every
logged metric; then evaluates two of the runs with eval.py's code and writes its numbers. Run it
on two commits and compare::

    python scripts/equivalence.py run --out /tmp/eq_before      # on the commit before
    python scripts/equivalence.py run --out /tmp/eq_after       # on the commit after
    python scripts/equivalence.py compare /tmp/eq_before/equivalence.json /tmp/eq_after/equivalence.json

``compare`` prints the largest relative difference of every metric present in both files. The
run directories are kept under --out, so the *before* checkpoints can also be loaded by the new
code (``--load-from /tmp/eq_before`` on the *after* run evaluates them with the new code too).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

import facemask_vae.config  # noqa: F401  (registers the resolvers)
from facemask_vae.config import CONF_DIR

TINY = [
    "data=synthetic",
    "data.n_train=192",
    "data.n_val=64",
    "data.n_test=64",
    "data.image_size=32",
    "data.batch_size=32",
    "model.widths=[16,32,32]",
    "model.latent_dim=16",
    "trainer.precision=32-true",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "callbacks.image_logger.n_samples=4",
    "callbacks.image_logger.n_images=4",
]

#: run name -> overrides. The optimiser's and the adversarial keys moved in the redesign
#: (model.lr -> optimizer.lr, model.scheduler -> scheduler=..., model.adv_* -> module.*), so the
#: runs that set them say so in both spellings.
RUNS = {
    "ae": ["model=ae"],
    "vae": ["model=vae"],
    "vae_unet": ["model=vae_unet"],
    "vae_unet_block": ["model=vae_unet", "model.skip_posterior=block"],
    "vae_unet_det": ["model=vae_unet_det"],
    "vae_unet_coarse": ["model=vae_unet_coarse", "model.free_bits=0.1", "model.kl_balance=true"],
    "vae_cyclic": ["model=vae", "anneal=cyclic"],
    "vae_unet_controlled": ["model=vae_unet", "anneal=controlled", "anneal.period=1"],
    "aae": ["model=aae"],
}
OLD_KEYS = {
    "vae_cosine": ["model=vae", "model.scheduler=cosine", "model.lr=2e-3"],
    "ae_plateau": ["model=ae", "model.scheduler=plateau", "model.optimizer=adam"],
    "vae_gan": ["model=vae_gan", "model.adv_image_start=2"],
}
NEW_KEYS = {
    "vae_cosine": ["model=vae", "scheduler=cosine", "optimizer.lr=2e-3"],
    "ae_plateau": ["model=ae", "scheduler=plateau", "optimizer=adam"],
    "vae_gan": ["model=vae_gan", "module.image_start=2"],
}
EVAL = [
    "fid=false",
    "n_samples=96",
    "samplers=[prior,gmm,gaussian_all,two_stage_all]",
    "two_stage={latent_dim: 8, hidden: 32, epochs: 3}",
    "temperatures=[1.0,0.7]",
    "sampling_bn=[false,true]",
    "sampling_bn_batches=2",
    "gmm_components=2",
    "iwae_k=4",
    "iwae_images=16",
    "n_pairs=8",
    "n_show_pairs=2",
    "interp_steps=5",
    "probe_train_max=128",
    "shifts=[zoom_out,grayscale]",
    "cnn_epochs=1",
    "batch_size=64",
]


def _compose(name: str, overrides: list[str], out: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        del cfg["hydra"]
    return cfg


def _numbers(values: dict) -> dict[str, float]:
    out = {}
    for column, row in values.items():
        for key, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"{column}::{key}"] = float(v)
    return out


def run(out: Path, only: list[str] | None, load_from: Path | None) -> None:
    from facemask_vae.evaluation import evaluate
    from facemask_vae.training import train

    torch.set_num_threads(1)
    new = (CONF_DIR / "optimizer").is_dir()
    runs = RUNS | (NEW_KEYS if new else OLD_KEYS)
    result: dict[str, dict[str, float]] = {}
    for name, overrides in runs.items():
        if only and name not in only:
            continue
        cfg = _compose("config", [*TINY, *overrides], out / name)
        metrics = train(cfg)["metrics"]
        result[name] = {k: v for k, v in sorted(metrics.items())}
        print(f"{name}: test/loss {metrics.get('test/loss')}", flush=True)
    source = load_from or out
    eval_runs = [str(source / n) for n in ("vae_unet", "ae", "vae_unet_coarse")]
    if all(Path(r).is_dir() for r in eval_runs):
        cfg = _compose("eval", [*EVAL, f"runs=[{','.join(eval_runs)}]"], out / "eval")
        values = evaluate(cfg, command="scripts/equivalence.py")["values"]
        result["eval"] = _numbers(values)
    (out / "equivalence.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"wrote {out / 'equivalence.json'}")


def compare(a: Path, b: Path, tol: float) -> int:
    before, after = json.loads(a.read_text()), json.loads(b.read_text())
    worst, bad = 0.0, []
    for group in sorted(set(before) | set(after)):
        x, y = before.get(group, {}), after.get(group, {})
        missing = sorted(set(x) ^ set(y))
        if missing:
            print(f"{group}: only in one file: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        for key in sorted(set(x) & set(y)):
            u, v = x[key], y[key]
            if math.isnan(u) and math.isnan(v):
                continue
            rel = abs(u - v) / max(abs(u), abs(v), 1e-12)
            worst = max(worst, rel)
            if rel > tol:
                bad.append((group, key, u, v, rel))
        print(f"{group}: {len(set(x) & set(y))} numbers compared")
    for group, key, u, v, rel in bad:
        print(f"DIFFERS {group} {key}: {u!r} -> {v!r} (relative {rel:.2e})")
    print(f"largest relative difference: {worst:.2e} (tolerance {tol:g}); {len(bad)} beyond it")
    return 1 if bad else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--only", nargs="*")
    r.add_argument("--load-from", type=Path, help="evaluate this earlier --out's runs instead")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--tol", type=float, default=1e-5)
    args = p.parse_args()
    if args.cmd == "run":
        run(args.out, args.only, args.load_from)
    else:
        sys.exit(compare(args.before, args.after, args.tol))


if __name__ == "__main__":
    main()
