"""Train a model: python train.py [model=ae|vae|vae_unet] [anneal=constant|linear|sigmoid|cyclic|controlled] ...

Thin on purpose: compose the config, hand it to facemask_vae.training.train.
"""

import hydra
from omegaconf import DictConfig

import facemask_vae.config  # noqa: F401  (registers the config resolvers)
from facemask_vae.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    result = train(cfg)
    # the value Hydra sweepers optimise: the validation ELBO (higher is better) or AE loss
    metrics = result["metrics"]
    return metrics.get("val/elbo", metrics.get("val/loss"))


if __name__ == "__main__":
    main()
