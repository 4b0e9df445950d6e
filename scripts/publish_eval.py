"""Copy an eval.py output directory into docs/: report, metrics and figures shrunk for git.

    python scripts/publish_eval.py logs/study/eval/ae_vs_vae docs/results/ae_vs_vae

Figures are re-encoded as 256-colour PNGs (and halved until under --max-kb), so the repository
stays small; report.md links keep working because the file names do not change.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image


def shrink_png(src: Path, dst: Path, max_kb: int) -> None:
    img = Image.open(src).convert("RGB")
    while True:
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
        if dst.stat().st_size <= max_kb * 1024 or min(img.size) < 200:
            return
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--max-kb", type=int, default=600)
    args = p.parse_args()
    args.dst.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "metrics.json"):
        shutil.copy2(args.src / name, args.dst / name)
    for png in sorted(args.src.glob("*.png")):
        shrink_png(png, args.dst / png.name, args.max_kb)
        print(
            f"{png.name}: {png.stat().st_size // 1024} KB -> {(args.dst / png.name).stat().st_size // 1024} KB"
        )


if __name__ == "__main__":
    main()
