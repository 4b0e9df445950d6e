"""What every section shares: the Context (data, runs, the domain CNN, results, named random
streams, memoised shared results), section timing, batching, loading."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm.auto import tqdm

from facemask_vae.checkpoints import LoadedRun, load_run
from facemask_vae.classifier import MaskCNN, fingerprint, get_mask_cnn
from facemask_vae.config import ConfigError

REFERENCE = "data (reference)"

#: every random stream eval draws from, by name, as an offset from ``cfg.seed``: a section that
#: draws adds its own name here (several historical streams share the base seed; they are
#: separate generators all the same)
STREAMS = {
    "probe_subset": 0,  # the training images whose latents train the probes
    "iwae_subset": 0,  # the test images the IWAE bound averages over
    "posterior_noise": 0,  # the one posterior draw of the test pass's ELBO
    "pairs": 0,  # the (with mask, without mask) test pairs
    "iwae": 1,  # the IWAE bound's importance samples
    "samples": 2,  # every sample set's draws
    "sampler_subset": 5,  # the training images the fitted samplers see (sampler_fit_max)
    "shifts": 17,  # the shifted test copies: + the shift's place in SHIFTS
    "probe_augment": 31,  # the augmented probe's training copies
    "editing": 41,  # the faces edited (+ 1, + 0: one-class samples; + 2: unconditional ones)
}

T = TypeVar("T")


@dataclass
class Context:
    """Everything the sections share: config, runs, data, the domain CNN and the results."""

    cfg: DictConfig
    out_dir: Path
    device: torch.device
    runs: list[LoadedRun]
    names: list[str]
    dm: Any
    x_test: torch.Tensor  # uint8 N x 3 x S x S
    y_test: torch.Tensor
    x_train: torch.Tensor  # uint8 probe subset of the training split
    y_train: torch.Tensor
    cnn: MaskCNN
    cnn_test_feats: torch.Tensor
    cnn_test_probs: torch.Tensor
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # section, file, caption
    notes: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # metrics.json "tables"
    data_source: str = ""  # where the data config came from
    cnn_info: Any = None  # the domain CNN's load result (path, cached, seconds)
    data_fingerprint: str = ""  # of the evaluated split's images and labels
    #: what the :func:`shared` accessors computed, by accessor and arguments
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    @property
    def bs(self) -> int:
        return int(self.cfg.batch_size)

    def heading(self, title: str) -> None:
        self.rows.append(("", title))

    def put(self, column: str, key: str, value: Any, label: str) -> None:
        """Record one number of the table (``column`` = run name or :data:`REFERENCE`)."""
        if key not in self.labels:
            self.labels[key] = label
            self.rows.append((key, label))
        if isinstance(value, torch.Tensor):
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        self.values.setdefault(column, {})[key] = value

    def figure(self, section: str, name: str, caption: str) -> Path:
        self.figures.append((section, name, caption))
        return self.out_dir / name

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)

    def floats(self, images: torch.Tensor) -> torch.Tensor:
        return self.dm.to_float(images.to(self.device))

    def seed(self, stream: str, extra: int = 0) -> int:
        """The seed of the named random stream (see :data:`STREAMS`)."""
        if stream not in STREAMS:
            raise KeyError(f"no random stream {stream!r}: add it to evaluation.context.STREAMS")
        return int(self.cfg.seed) + STREAMS[stream] + extra

    def rng(self, stream: str, device: torch.device | None = None) -> torch.Generator:
        """A fresh generator of the named random stream, on ``device`` (default: the CPU)."""
        return torch.Generator(device=device or "cpu").manual_seed(self.seed(stream))

    def cnn_predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The domain CNN's features and P(WithMask) of uint8 or float images, on the CPU."""
        x = self.floats(images) if images.dtype == torch.uint8 else images.to(self.device)
        f, p = self.cnn.predict(x, self.bs)
        return f.cpu(), p.cpu()


def shared(fn: Callable[..., T]) -> Callable[..., T]:
    """Make ``fn(ctx, *args)`` a shared result: computed on first use, then kept in the context,
    so any section can read it and none has to run first."""

    @functools.wraps(fn)
    def accessor(ctx: Context, *args: Any) -> T:
        key = (fn.__module__, fn.__qualname__, *args)
        if key not in ctx.memo:
            ctx.memo[key] = fn(ctx, *args)
        return ctx.memo[key]

    return accessor


@contextlib.contextmanager
def timed(ctx: Context, section: str) -> Iterator[None]:
    """Time a section, print it, and keep it for metrics.json and the report."""
    ctx.timings[section] = 0.0  # keeps the sections in order when a step inside adds its own
    t0 = time.perf_counter()
    yield
    dt = time.perf_counter() - t0
    ctx.timings[section] = round(dt, 2)
    tqdm.write(f"[eval] {section}: {dt:.1f} s")


def batches(n: int, bs: int, desc: str | None = None) -> Iterator[slice]:
    """Slices of ``range(n)`` of at most ``bs``, with a progress bar when ``desc`` is given."""
    starts = range(0, n, bs)
    it = tqdm(starts, desc=desc, leave=False, disable=None) if desc else starts
    for s in it:
        yield slice(s, min(s + bs, n))


def resolve_device(name: str) -> torch.device:
    """eval's ``device``: ``auto`` is a GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _data_config(cfg: DictConfig, runs: list[LoadedRun]) -> tuple[DictConfig, str]:
    if cfg.get("data") is not None:
        return cfg.data, "given on the command line (data=...)"
    for run in runs:
        if run.config is not None and run.config.get("data") is not None:
            return run.config.data, f"from the config of {run.name}"
    raise ConfigError(
        "no data config: the runs have no config.yaml with a data section; add data=facemask "
        "or data=synthetic"
    )


def load_everything(cfg: DictConfig, out_dir: Path) -> Context:
    """Runs, data, probe subset and the domain CNN (cached), with their checks."""
    paths = cfg.get("runs")
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ConfigError('nothing to evaluate: give runs, e.g. python eval.py "runs=[<run dir>]"')
    if cfg.split not in ("test", "val"):
        raise ConfigError(f"split must be 'test' or 'val', got {cfg.split!r}")
    device = resolve_device(str(cfg.device))
    runs = [load_run(p) for p in tqdm(list(paths), desc="loading runs", leave=False, disable=None)]
    for r in runs:
        r.model.to(device)
    names = unique_names([r.name for r in runs], [r.run_dir for r in runs])

    data_cfg, data_src = _data_config(cfg, runs)
    dm = instantiate(data_cfg)
    size = int(dm.image_size)
    for name, r in zip(names, runs, strict=True):
        if r.model.image_size != size:
            raise ConfigError(
                f"{name} was trained on {r.model.image_size} px images but the data is {size} px: "
                f"add data.image_size={r.model.image_size} (and evaluate runs of one size together)"
            )
    test = dm.dataset(cfg.split)
    train = dm.dataset("train")
    g = torch.Generator().manual_seed(int(cfg.seed) + STREAMS["probe_subset"])
    keep = torch.randperm(len(train), generator=g)[: int(cfg.probe_train_max)].sort().values

    cnn = get_mask_cnn(
        train.images,
        train.labels,
        directory=cfg.get("cache_dir"),
        epochs=int(cfg.cnn_epochs),
        seed=int(cfg.seed),
        device=device,
    )
    tqdm.write(
        f"[eval] domain CNN: {'cached' if cnn.cached else 'trained'} in {cnn.seconds:.1f} s "
        f"({cnn.path})"
    )
    ctx = Context(
        cfg=cfg,
        out_dir=out_dir,
        device=device,
        runs=runs,
        names=names,
        dm=dm,
        x_test=test.images,
        y_test=test.labels,
        x_train=train.images[keep],
        y_train=train.labels[keep],
        cnn=cnn.model,
        cnn_test_feats=torch.empty(0),
        cnn_test_probs=torch.empty(0),
        data_source=data_src,
        cnn_info=cnn,
        data_fingerprint=fingerprint(test.images, test.labels),
    )
    ctx.cnn_test_feats, ctx.cnn_test_probs = ctx.cnn_predict(test.images)
    return ctx


def unique_names(names: list[str], run_dirs: list[Path | None] | None = None) -> list[str]:
    """Unique column names for runs.

    Runs sharing a name (same model and schedule, e.g. ``experiment=resnet_blocks`` beside the
    default U-Net VAE) take their run directories' names when those tell them apart; any repeat
    left gets ``#2``, ``#3``... appended.
    """
    names = list(names)
    if run_dirs is not None:
        for n in set(names):
            idx = [i for i, m in enumerate(names) if m == n]
            dirs = [run_dirs[i] for i in idx]
            if len(idx) > 1 and all(dirs) and len({d.name for d in dirs}) == len(dirs):
                for i in idx:
                    names[i] = run_dirs[i].name
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out
