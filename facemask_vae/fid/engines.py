"""The Inception-V3 run by a CPU inference engine instead of torch, as a module that takes and
returns torch tensors. ONNX Runtime (the ``fid`` extra) is what eval uses on a CPU
(``fid_engine=auto``): 1.48x torch's speed on the 2-core EPYC with features equal to 1.2e-6
(benchmarks/results/fid_speed_cpu_engines.json). OpenVINO (``pip install openvino``) is here for
``benchmarks.fid_speed`` and ``benchmarks.fid_accuracy``, which measure both.

Both run the eager rebuild (:func:`facemask_vae.fid.eager.eager_inception`, BatchNorm folded)
in float32 (OpenVINO is told so: it would pick bf16 on AMX CPUs), with torch's thread count.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ENGINES = ("onnxruntime", "openvino")


def available(engine: str) -> bool:
    """Whether ``engine`` (and, for ONNX Runtime, the ``onnx`` exporter it needs) is installed."""
    from importlib.util import find_spec

    needs = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino",)}[engine]
    return all(find_spec(m) is not None for m in needs)


def _onnxruntime(net: torch.nn.Module, example: torch.Tensor, threads: int) -> Callable:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inception.onnx"
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,  # the TorchScript exporter: needs onnx, not onnxscript
            input_names=["x"],
            output_names=["features"],
            dynamic_axes={"x": {0: "n"}, "features": {0: "n"}},
        )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def _openvino(net: torch.nn.Module, example: torch.Tensor, threads: int) -> Callable:
    import openvino as ov

    model = ov.convert_model(net, example_input=example)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = ov.Core().compile_model(model, "CPU", config)
    return lambda x: compiled(x)[0]


class EngineInception(torch.nn.Module):
    """``net`` (N x 3 x 299 x 299 -> N x 2048) converted for ``engine``, on the CPU."""

    def __init__(self, engine: str, net: torch.nn.Module) -> None:
        super().__init__()
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        example = torch.zeros(2, 3, 299, 299)
        build = _onnxruntime if engine == "onnxruntime" else _openvino
        with torch.no_grad():
            self._run = build(net.eval().float(), example, torch.get_num_threads())
        self.engine = engine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._run(np.ascontiguousarray(x.detach().float().cpu().numpy()))
        return torch.from_numpy(np.asarray(out)).to(x.device)
