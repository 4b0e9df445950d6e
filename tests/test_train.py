"""End-to-end training on the synthetic data: learning, logging, resume, sweeps, DDP."""

from __future__ import annotations

import itertools
import math
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT, TINY, compose_config, run_script
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from facemask_vae.annealing import Cyclic
from facemask_vae.training import train


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = compose_config(
        [
            *TINY,
            "model=vae_unet",
            "anneal=linear",
            "anneal.warmup_steps=6",
            "anneal.warmup_epochs=null",
            "trainer.max_epochs=2",
        ],
        out,
    )
    return out, train(cfg)


def test_two_epochs_lower_the_validation_loss_and_log_scalars(two_epoch_run):
    out, result = two_epoch_run
    scalars = _scalars(out)
    val = [v for _, v in scalars["val/loss"]]
    assert len(val) == 2 and val[1] < val[0]
    for tag in (
        "train/loss_step",
        "train/recon_step",
        "train/kl_step",
        "train/beta_step",
        "val/elbo",
        "val/psnr",
        "val/ssim",
        "val/active_units",
        "val/kl_level1",
    ):
        assert tag in scalars, tag
    betas = [v for _, v in scalars["train/beta_step"]]
    assert betas[0] < betas[-1] == pytest.approx(1.0)  # the warm-up ran
    assert "test/elbo" in result["metrics"]


def test_run_writes_images_checkpoints_and_resolved_config(two_epoch_run):
    out, result = two_epoch_run
    acc = EventAccumulator(str(out), size_guidance={"images": 0})
    acc.Reload()
    assert {"images/recon", "images/samples", "images/interpolation"} <= set(acc.Tags()["images"])
    assert sorted(p.name for p in (out / "images").glob("*epoch001.png")) == [
        "interpolation_epoch001.png",
        "recon_epoch001.png",
        "samples_epoch001.png",
    ]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert Path(result["best_checkpoint"]).is_file()
    text = (out / "config.yaml").read_text()
    assert "${" not in text and "vae_unet-linear" in text


def test_resumed_run_continues_its_annealing_schedule(tmp_path):
    sched = ["anneal=cyclic", "anneal.n_cycles=1", "anneal.ratio=1.0"]
    first = compose_config(
        [*TINY, "model=vae", *sched, "trainer.max_epochs=1", "test=false"], tmp_path
    )
    train(first)
    steps_per_epoch = 192 // 32
    resumed = compose_config(
        [*TINY, "model=vae", *sched, "trainer.max_epochs=2", "test=false", "ckpt_path=last"],
        tmp_path,
    )
    train(resumed)
    betas = dict(_scalars(tmp_path)["train/beta_step"])
    total = 2 * steps_per_epoch
    # the second epoch's betas follow the 2-epoch schedule from where the first stopped
    later = {s: b for s, b in betas.items() if s >= steps_per_epoch}
    assert later, betas
    for step, beta in later.items():
        # a schedule that restarted on resume would log beta = 0 at the first resumed step
        assert beta == pytest.approx(Cyclic(n_cycles=1, ratio=1.0)(step, total), abs=1e-6)


def test_ae_ignores_the_anneal_group(tmp_path, caplog):
    cfg = compose_config(
        [*TINY, "model=ae", "anneal=cyclic", "trainer.max_epochs=1", "test=false"], tmp_path
    )
    with caplog.at_level("INFO"):
        train(cfg)
    assert sum("anneal group" in r.getMessage() for r in caplog.records) == 1
    assert "train/beta_step" not in _scalars(tmp_path)


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_script("train.py", args, cwd, full_errors=True, timeout=timeout)


def test_a_multirun_names_its_run_dirs_and_one_failing_job_does_not_stop_the_others(tmp_path):
    """train.py -m over two schedules x two latent sizes, where latent_dim=0 is refused: every
    job gets a numbered, named directory, the valid jobs after a failure still train, and the
    sweep exits non-zero naming the failed job's overrides."""
    proc = _run(
        [
            "-m",
            *TINY,
            "trainer=debug",
            "model=vae",
            "anneal=constant,cyclic",
            "model.latent_dim=0,16",
            "hydra.sweep.dir=" + str(tmp_path / "sweep"),
        ],
        tmp_path,
    )
    assert proc.returncode != 0
    assert "Error executing job with overrides" in proc.stderr
    assert "model.latent_dim=0" in proc.stderr and "model.latent_dim must be >= 1" in proc.stderr
    jobs = sorted((p for p in (tmp_path / "sweep").iterdir() if p.is_dir()), key=lambda p: p.name)
    names = sorted(job.name.split("_", 1)[1] for job in jobs)
    assert names == ["vae-constant", "vae-constant", "vae-cyclic", "vae-cyclic"]
    assert [int(job.name.split("_")[0]) for job in jobs] == [0, 1, 2, 3]
    failed = [
        "model.latent_dim=0" in (job / ".hydra" / "overrides.yaml").read_text() for job in jobs
    ]
    assert sum(failed) == 2
    # every valid job ran to the end, at least one of them after a failed one
    assert all(
        (job / "config.yaml").is_file() for job, bad in zip(jobs, failed, strict=True) if not bad
    )
    assert not all(failed[failed.index(True) + 1 :])


def _sweep_points(experiment: str) -> list[list[str]]:
    """The jobs of an experiment's multirun, as override lists: the product of its sweep params."""
    spec = OmegaConf.load(ROOT / "conf" / "experiment" / f"{experiment}.yaml")
    params = OmegaConf.select(spec, "hydra.sweeper.params") or {}
    axes = [
        [f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()
    ]
    return [list(point) for point in itertools.product(*axes)]


def test_sweep_points_are_the_product_of_an_experiments_params():
    assert _sweep_points("anneal_sweep")[1] == ["anneal=beta_vae"]
    assert len(_sweep_points("anneal_sweep")) == 6 and len(_sweep_points("ae_vs_vae")) == 4
    assert _sweep_points("no_augment") == [[]]


@pytest.mark.parametrize(
    "experiment", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
)
def test_every_experiment_runs_as_a_fast_dev_run_for_every_point_of_its_sweep(tmp_path, experiment):
    """Every conf/experiment/* composes and trains (one batch each) at every point of its sweep,
    in-process; the multirun machinery itself is tested once, through train.py, below."""
    points = _sweep_points(experiment)
    names = set()
    for i, point in enumerate(points):
        out = tmp_path / str(i)
        cfg = compose_config([f"experiment={experiment}", *TINY, "trainer=debug", *point], out)
        names.add(cfg.run_name)
        result = train(cfg)
        assert (out / "config.yaml").is_file()
        assert all(math.isfinite(v) for v in result["metrics"].values()), result["metrics"]
    assert len(names) == len(points), names  # each point's override took effect


def test_gpu_fast_profile_runs_on_the_cpu_with_its_batch_and_device_batches(tmp_path, monkeypatch):
    """experiment=gpu_fast on the CPU: its batch of 512 and data.on_device=true as they are."""
    import pytorch_lightning as pl

    from facemask_vae import training
    from facemask_vae.data.device import DeviceBatches

    seen: list[tuple[str, int]] = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((type(trainer.train_dataloader).__name__, batch[0].shape[0]))

    build = training.build_callbacks
    monkeypatch.setattr(training, "build_callbacks", lambda cfg, m: [*build(cfg, m), Spy()])
    tiny = [o for o in TINY if not o.startswith("data.batch_size")]
    overrides = ["experiment=gpu_fast", *tiny, "model=vae", "data.n_train=600"]
    cfg = compose_config([*overrides, "+trainer.fast_dev_run=true"], tmp_path)
    assert cfg.data.batch_size == 512 and cfg.data.on_device is True
    result = train(cfg)
    assert seen == [(DeviceBatches.__name__, 512)]
    assert math.isfinite(result["metrics"]["val/elbo"])


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path):
    proc = _run(
        [
            *TINY,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            "model=vae",
            f"hydra.run.dir={tmp_path}/run",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_a_runs_test_pass_reruns_from_its_best_checkpoint(two_epoch_run):
    """seed_table.py --retest: same data, precision and seed as the run, nothing retrained."""
    from facemask_vae.training import retest_checkpoint

    out, result = two_epoch_run
    again = retest_checkpoint(out)
    logged = {k: v for k, v in result["metrics"].items() if k.startswith("test/")}
    assert set(again) == set(logged) and "test/ssim" in again
    assert again == retest_checkpoint(out)  # seeded: the posterior samples repeat
    # another draw of the posterior samples moves the ELBO a little, never by much
    assert again["test/elbo"] == pytest.approx(logged["test/elbo"], rel=0.02)
    assert again["test/ssim"] == pytest.approx(logged["test/ssim"], abs=0.02)


def test_seed_table_groups_runs_by_run_name_from_run_or_sweep_dirs(two_epoch_run, tmp_path):
    out, result = two_epoch_run
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "0_copy").symlink_to(out, target_is_directory=True)  # the same run, seen twice
    done = run_script("scripts/seed_table.py", [str(out), str(sweep)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    name = OmegaConf.load(out / "config.yaml").run_name
    row = next(ln for ln in done.stdout.splitlines() if ln.startswith(f"| {name} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2"  # two runs of one name: one row, with a std column
    elbo = f"{result['metrics']['test/elbo']:,.0f}"
    assert cells[2] == f"{elbo} ± 0"
