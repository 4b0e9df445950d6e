"""Train a model: python train.py [model=ae|vae|vae_unet] [anneal=linear|cyclic|...] [data=synthetic]

Thin on purpose: compose the config, hand it to facemask_vae.training.train.
"""

import hydra
from omegaconf import DictConfig

import facemask_vae.config  # noqa: F401  (registers the config resolvers)
from facemask_vae.errors import friendly_errors
from facemask_vae.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    with friendly_errors():
        result = train(cfg)
    # what a Hydra sweeper would optimise: the validation ELBO, or the AE's validation loss
    return result["metrics"].get(result["monitor"])


if __name__ == "__main__":
    main()
