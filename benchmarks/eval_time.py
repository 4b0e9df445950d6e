"""How long does eval.py take, and where does the time go? One report, timed as a user runs it.

    FACEMASK_ROOT=".../Face Mask Dataset" python -m benchmarks.eval_time <ae run> <vae_unet run> \\
        --out benchmarks/results/eval_default_cpu.json
    python -m benchmarks.eval_time <run> --cold -- "sections=[samples]" fid=false

Runs ``python eval.py "runs=[...]"`` with eval's defaults plus any overrides after ``--``, and
writes its wall time (Python start-up and imports included), the report's ``timings_s`` by
section, and each model's sample numbers (the best setting, its FID and the prior's) with the
command and the machine. ``--cold`` gives eval an empty cache directory, so the domain CNN is
trained and the real images' Inception features computed as on a first run; by default the
cache is the user's (``FACEMASK_CACHE`` or ``~/.cache/facemask-vae``), warm after one report.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, command_line, machine

#: the sample numbers a result keeps per model
SAMPLE_KEYS = ("samples.best", "samples.run_sampler", "samples.fid", "samples.fid_best")


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.eval_time", description=__doc__.split("\n")[0]
    )
    ap.add_argument("runs", nargs="+", help="run directories to evaluate")
    ap.add_argument("--cold", action="store_true", help="an empty cache: a first run's costs")
    ap.add_argument("--out", type=Path, default=None)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    args.overrides = argv[cut + 1 :]  # eval.py's overrides, after --
    with tempfile.TemporaryDirectory() as tmp:
        report_dir = Path(tmp) / "report"
        cmd = [sys.executable, str(ROOT / "eval.py"), f"runs=[{','.join(args.runs)}]"]
        cmd += [*args.overrides, f"hydra.run.dir={report_dir}"]
        if args.cold:
            cmd.append(f"cache_dir={Path(tmp) / 'cache'}")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"eval.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        metrics = json.loads((report_dir / "metrics.json").read_text())
    shown = [c for c in cmd if not c.startswith(("hydra.run.dir=", "cache_dir="))]
    result = {
        "what": "wall time of one eval.py report" + (", empty cache" if args.cold else ""),
        "command": command_line(),
        "eval_command": shlex.join(["python", "eval.py", *shown[2:]]),
        "machine": machine(),
        "cache": "empty (first run)" if args.cold else "the user's (warm after one report)",
        "wall_s": round(wall, 1),
        "timings_s": metrics["timings_s"],
        "samples": {
            name: {k: v for k, v in values.items() if k in SAMPLE_KEYS}
            for name, values in metrics["metrics"].items()
            if name in metrics["runs"]
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
