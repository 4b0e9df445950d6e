"""Evaluate trained runs side by side: python eval.py "runs=[<run dir or checkpoint>, ...]" [fid=false]

Thin on purpose: compose the config, hand it to facemask_vae.evaluation.evaluate, say where the
report is. A run directory or checkpoint that cannot be loaded stops with one line, no traceback.
"""

import shlex
import sys

import hydra
from omegaconf import DictConfig

import facemask_vae.config  # noqa: F401  (registers the config resolvers)
from facemask_vae.checkpoints import CheckpointError
from facemask_vae.errors import friendly_errors
from facemask_vae.evaluation import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    command = shlex.join(["python", *sys.argv])
    with friendly_errors():
        try:
            result = evaluate(cfg, command=command)
        except CheckpointError as e:
            print(f"Error: {e}", file=sys.stderr)
            sys.exit(1)
    print(f"report:  {result['report']}")
    print(f"metrics: {result['metrics']}")


if __name__ == "__main__":
    main()
