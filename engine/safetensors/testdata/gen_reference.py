#!/usr/bin/env python3
"""Write reference files for the Go safetensors package's tests, using the
official safetensors library and PyTorch:

  reference.safetensors  tensors of several dtypes and shapes, saved by
                         safetensors.torch.save_file with metadata
  reference.json         for each tensor its dtype, shape and the float32 bit
                         patterns torch reads back (absent for non-float
                         dtypes), and torch's float32 -> bfloat16 rounding of a
                         set of float32 bit patterns (ties, overflow, subnormals)

Run where torch and safetensors are installed (the device machine):
    python3 engine/safetensors/testdata/gen_reference.py OUTDIR
"""
import json
import os
import sys

import safetensors
import torch
from safetensors.torch import save_file


def float_bits(t):
    """float32 bit patterns of t's values, as unsigned ints."""
    return [b & 0xFFFFFFFF for b in t.to(torch.float32).flatten().view(torch.int32).tolist()]


def main(out):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "model.embed_tokens.weight": (torch.randn(6, 5, generator=g) * 3).to(torch.bfloat16),
        "model.layers.0.mlp.down_proj.weight": torch.randn(2, 3, 4, generator=g).to(torch.float16),
        "model.norm.weight": torch.randn(7, generator=g),
        "odd_bf16": torch.randn(3, generator=g).to(torch.bfloat16),
        "scalar": torch.tensor(-1.25),
        "empty": torch.zeros(0, 4, dtype=torch.bfloat16),
        # half extremes: smallest subnormal, largest subnormal, smallest normal, max, -0, inf
        "half_edges": torch.tensor([2.0**-24, 2.0**-14 - 2.0**-24, 2.0**-14, 65504.0, -0.0, float("inf")],
                                   dtype=torch.float16),
        "position_ids": torch.arange(3, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
    }
    save_file(tensors, os.path.join(out, "reference.safetensors"), metadata={"format": "pt"})

    ref = {"generator": f"torch {torch.__version__}, safetensors {safetensors.__version__}", "tensors": {}}
    for name, t in tensors.items():
        entry = {"dtype": str(t.dtype), "shape": list(t.shape)}
        if t.is_floating_point():
            entry["float32_bits"] = float_bits(t)
        ref["tensors"][name] = entry

    # float32 inputs around bf16 rounding boundaries, plus random ones.
    patterns = []
    for hi in [0x0000, 0x0001, 0x007F, 0x0080, 0x3F80, 0x3F81, 0x4049, 0x7F7F, 0x8000, 0xBF80, 0xFF7F]:
        for lo in [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF]:
            patterns.append(hi << 16 | lo)
    rnd = torch.randint(0, 2**32, (2000,), generator=g, dtype=torch.int64).tolist()
    patterns += [p for p in rnd if (p >> 23) & 0xFF != 0xFF]  # finite only: NaN payloads differ by design
    src = torch.tensor([p - 2**32 if p >= 2**31 else p for p in patterns], dtype=torch.int32).view(torch.float32)
    bf = src.to(torch.bfloat16).view(torch.int16).tolist()
    ref["bf16_rounding"] = {"float32_bits": patterns, "bf16_bits": [b & 0xFFFF for b in bf]}

    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
