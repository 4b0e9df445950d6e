"""Every config group composes, and its objects build with hydra.utils.instantiate."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import open_dict

from facemask_vae.config import CONF_DIR, ConfigError, validate_train_config


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _compose(overrides: list[str], name: str = "config"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/facemask-vae-compose"
    return cfg


@pytest.mark.parametrize(
    "override",
    [
        f"{g}={o}"
        for g in ("model", "anneal", "trainer", "callbacks", "logger", "data", "paths")
        for o in _options(g)
    ]
    + [f"experiment={o}" for o in _options("experiment")],
)
def test_every_config_group_option_composes(override):
    cfg = _compose([override, "data=synthetic"] if not override.startswith("data") else [override])
    assert cfg.model._target_ and cfg.trainer._target_


@pytest.mark.parametrize("model", _options("model"))
def test_every_model_config_instantiates(model):
    cfg = _compose([f"model={model}", "data=synthetic", "data.image_size=32"])
    module = instantiate(cfg.model)
    assert module.image_size == 32
    assert cfg.model.name == model


@pytest.mark.parametrize("anneal", _options("anneal"))
def test_every_anneal_config_instantiates(anneal):
    cfg = _compose([f"anneal={anneal}", "data=synthetic"])
    cb = instantiate(cfg.anneal)
    assert cb.name == {"beta_vae": "beta4.0"}.get(anneal, anneal)  # beta-VAE runs say their beta


def test_callbacks_loggers_and_trainer_instantiate():
    cfg = _compose(["data=synthetic", "trainer=debug", "callbacks=early_stopping", "logger=many"])
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    assert {type(c).__name__ for c in callbacks} >= {
        "ModelCheckpoint",
        "EarlyStopping",
        "ImageLogger",
    }
    loggers = [instantiate(c) for c in cfg.logger.values()]
    assert {type(lg).__name__ for lg in loggers} == {"TensorBoardLogger", "CSVLogger"}
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert trainer.fast_dev_run


def test_run_names_say_model_and_schedule():
    assert (
        _compose(["model=vae_unet", "anneal=cyclic", "data=synthetic"]).run_name
        == "vae_unet-cyclic"
    )
    assert _compose(["model=ae", "anneal=cyclic", "data=synthetic"]).run_name == "ae"
    assert _compose(["model=ae", "data=synthetic"]).callbacks.model_checkpoint.monitor == "val/loss"
    assert (
        _compose(["model=vae", "data=synthetic"]).callbacks.model_checkpoint.monitor == "val/elbo"
    )


def test_default_data_root_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("FACEMASK_ROOT", "/somewhere/Face Mask Dataset")
    assert _compose([]).data.root == "/somewhere/Face Mask Dataset"


def test_eval_config_composes():
    cfg = _compose(["runs=[a,b]"], name="eval")
    assert list(cfg.runs) == ["a", "b"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("data.batch_size=0", "data.batch_size"),
        ("model.latent_dim=0", "model.latent_dim"),
        ("data.image_size=60", "data.image_size"),
        ("anneal=cyclic anneal.n_cycles=0", "anneal.n_cycles"),
        ("anneal=cyclic anneal.ratio=1.5", "anneal.ratio"),
        ("anneal=constant anneal.beta=-1", "anneal.beta"),
        ("anneal=constant anneal.beta=nan", "anneal.beta"),
        ("ckpt_path=/no/such.ckpt", "ckpt_path"),
        ("module.compile=true module.compile_mode=fast", "module.compile_mode"),
        ("module.compile_mode=reduce-overhead", "needs module.compile=true"),
        ("model=ae module.compile_mode=max-autotune", "needs module.compile=true"),
        ("model.skip_levels=[7]", "model.skip_levels"),
        ("optimizer.lr=0", "optimizer.lr"),
    ],
)
def test_bad_values_fail_validation_naming_the_key(override, match):
    cfg = _compose(["data=synthetic", *override.split()])
    with pytest.raises(ConfigError, match=match):
        validate_train_config(cfg)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead", "max-autotune"])
def test_compile_modes_pass_validation_with_compile_on(mode):
    cfg = _compose(["data=synthetic", "module.compile=true", f"module.compile_mode={mode}"])
    validate_train_config(cfg)
    assert cfg.module.compile_mode == mode


def test_compile_is_off_by_default_in_every_model_config():
    for model in _options("model"):
        cfg = _compose([f"model={model}", "data=synthetic"])
        assert cfg.module.compile is False and cfg.module.compile_mode is None, model
    assert "compile" not in _compose(["trainer=gpu", "data=synthetic"]).trainer


def test_gpu_fast_profile_scales_the_batch_and_the_learning_rate_by_the_sqrt_rule():
    base = _compose(["data=synthetic"])
    fast = _compose(["experiment=gpu_fast", "data=synthetic"])
    ratio = fast.data.batch_size / base.data.batch_size
    assert fast.data.batch_size == 512 and ratio == 4
    assert fast.optimizer.lr == pytest.approx(base.optimizer.lr * ratio**0.5)
    assert fast.data.on_device is True
    assert fast.trainer.accelerator == "gpu" and fast.module.compile is False
    assert fast.run_name == "vae_unet_b512-linear"
    validate_train_config(fast)


def test_conf_dir_is_the_projects():
    assert (Path(CONF_DIR) / "config.yaml").is_file()
