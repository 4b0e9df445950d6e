#!/usr/bin/env bash
# Builds the folder that scripts/gpu_session.sh needs on the device machine, which has torch,
# Lightning, torchvision and tensorboard but not hydra-core, omegaconf or antlr4, and no dataset:
#   .gpu_carry/site/   hydra, omegaconf, antlr4 (pure Python, copied from this venv)
#   .gpu_carry/data/Face Mask Dataset/{Train,Validation,Test}/{WithMask,WithoutMask}/*.jpg
#                      a 64 px copy (centre square crop, bicubic, as the data module decodes;
#                      JPEG quality 95) in the Kaggle layout
# Usage (from anywhere; the folder is git-ignored and travels with the run tool's `carry`):
#   scripts/gpu_carry.sh
#   CARRY_LIMIT=8 CARRY_DIR=/tmp/carry scripts/gpu_carry.sh   # 8 images per class folder: a check
# Source: $FACEMASK_ROOT (the "Face Mask Dataset" folder) or ../shared/facemask12k/Face Mask Dataset.
# PYTHON picks the interpreter (default: python). Existing images are kept (a rerun is cheap).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DEST=${CARRY_DIR:-.gpu_carry}
SRC=${FACEMASK_ROOT:-../shared/facemask12k/Face Mask Dataset}
SIZE=${CARRY_SIZE:-64}
[ -d "$SRC/Train" ] || { echo "no dataset at '$SRC' (set FACEMASK_ROOT to the 'Face Mask Dataset' folder)" >&2; exit 1; }

site=$("$PY" -c 'import omegaconf, os; print(os.path.dirname(os.path.dirname(omegaconf.__file__)))')
mkdir -p "$DEST/site"
for pkg in hydra omegaconf antlr4; do
  rm -rf "${DEST:?}/site/$pkg"
  cp -r "$site/$pkg" "$DEST/site/$pkg"
done
for dist in "$site"/hydra_core-*.dist-info "$site"/omegaconf-*.dist-info "$site"/antlr4_python3_runtime-*.dist-info; do
  rm -rf "${DEST:?}/site/$(basename "$dist")"
  cp -r "$dist" "$DEST/site/"
done
find "$DEST/site" -name __pycache__ -type d -prune -exec rm -rf {} +

"$PY" - "$SRC" "$DEST/data/Face Mask Dataset" "$SIZE" "${CARRY_LIMIT:-0}" <<'PYEOF'
import sys
from pathlib import Path

from PIL import Image

from facemask_vae.data.facemask import IMAGE_SUFFIXES, decode_image

src, dest, size, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
done = skipped = 0
for split in ("Train", "Validation", "Test"):
    for cls in ("WithMask", "WithoutMask"):
        files = sorted(p for p in (src / split / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        out = dest / split / cls
        out.mkdir(parents=True, exist_ok=True)
        for path in files[:limit] if limit > 0 else files:
            target = out / (path.stem + ".jpg")
            if target.exists():
                continue
            try:
                Image.fromarray(decode_image(path, size)).save(target, quality=95)
                done += 1
            except Exception as err:  # the data module skips such files too, with a warning
                print(f"skipped {path}: {err}", file=sys.stderr)
                skipped += 1
print(f"{done} images written, {skipped} skipped, under {dest}")
PYEOF
du -sh "$DEST/site" "$DEST/data"
total=$(( $(du -sk "$DEST" | cut -f1) + $(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1) ))
echo "carry + tracked files: $((total / 1024)) MiB (the run tool sends at most 64 MiB)"
[ "$total" -lt $((60 * 1024)) ] || echo "WARNING: over 60 MiB: use CARRY_LIMIT or a lower size" >&2
