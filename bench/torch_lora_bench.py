#!/usr/bin/python3
"""The PyTorch anchor of bench/train_bench.sh: one LoRA training step (forward, backward,
AdamW) of a Llama model on the CPU, timed, in the same setting as piquant's finetune:
F32 compute over a frozen base, LoRA r on q, k, v, o, gate, up, down of every layer,
one sequence of SEQ tokens per step, cross-entropy on every position.

  torch_lora_bench.py MODEL_DIR --seq 512 --steps 3 --threads 2 --rank 8

MODEL_DIR: a Hugging Face folder (config.json + *.safetensors, e.g. `piquant synth`).
Prints one JSON line: {"tokens_per_s": ..., "step_seconds": [...], "threads": ...}.
The first step is a warm-up and is not counted.
"""
import argparse
import json
import math
import os
import struct
import time

import numpy as np
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            lo, hi = info["data_offsets"]
            f.seek(base + lo)
            raw = f.read(hi - lo)
            if info["dtype"] == "BF16":
                arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, dtype={"F32": np.float32, "F16": np.float16}[info["dtype"]]).astype(np.float32)
            out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = json.load(open(os.path.join(args.model_dir, "config.json")))
    w = {}
    for fname in sorted(os.listdir(args.model_dir)):
        if fname.endswith(".safetensors"):
            w.update(read_safetensors(os.path.join(args.model_dir, fname)))
    E, H = config["hidden_size"], config["num_attention_heads"]
    KV = config.get("num_key_value_heads", H)
    D = config.get("head_dim", E // H)
    L, eps = config["num_hidden_layers"], config.get("rms_norm_eps", 1e-5)
    V = config["vocab_size"]
    r, scale = args.rank, 2.0  # alpha = 2r
    lora = {}
    for l in range(L):
        for name in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]:
            W = w[f"model.layers.{l}.{name}.weight"]
            A = torch.empty(r, W.shape[1]).uniform_(-1 / math.sqrt(W.shape[1]), 1 / math.sqrt(W.shape[1])).requires_grad_()
            B = torch.zeros(W.shape[0], r).requires_grad_()
            lora[f"{l}.{name}"] = (A, B)
    params = [t for pair in lora.values() for t in pair]
    opt = torch.optim.AdamW(params, lr=1e-4)
    inv = 1.0 / (config.get("rope_theta", 10000.0) ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    freqs = torch.outer(torch.arange(args.seq, dtype=torch.float32), inv)
    cos, sin = freqs.cos()[:, None, :], freqs.sin()[:, None, :]
    mask = torch.full((args.seq, args.seq), float("-inf")).triu(1)
    out_w = w.get("lm_head.weight", w["model.embed_tokens.weight"])

    def rot(x):
        h = x.shape[-1] // 2
        return torch.cat([x[..., :h] * cos - x[..., h:] * sin, x[..., h:] * cos + x[..., :h] * sin], -1)

    def lin(l, name, x):
        A, B = lora[f"{l}.{name}"]
        return x @ w[f"model.layers.{l}.{name}.weight"].T + scale * (x @ A.T) @ B.T

    def rms(x, g):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * g

    gen = torch.Generator().manual_seed(1)
    times = []
    for step in range(args.steps + 1):
        tokens = torch.randint(0, V, (args.seq + 1,), generator=gen)
        start = time.perf_counter()
        T = args.seq
        x = w["model.embed_tokens.weight"][tokens[:-1]]
        for l in range(L):
            p = f"model.layers.{l}"
            n = rms(x, w[p + ".input_layernorm.weight"])
            q = rot(lin(l, "self_attn.q_proj", n).view(T, H, D)).transpose(0, 1)
            k = rot(lin(l, "self_attn.k_proj", n).view(T, KV, D)).repeat_interleave(H // KV, 1).transpose(0, 1)
            v = lin(l, "self_attn.v_proj", n).view(T, KV, D).repeat_interleave(H // KV, 1).transpose(0, 1)
            att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D) + mask, -1) @ v
            x = x + lin(l, "self_attn.o_proj", att.transpose(0, 1).reshape(T, H * D))
            n = rms(x, w[p + ".post_attention_layernorm.weight"])
            x = x + lin(l, "mlp.down_proj", torch.nn.functional.silu(lin(l, "mlp.gate_proj", n)) * lin(l, "mlp.up_proj", n))
        logits = rms(x, w["model.norm.weight"]) @ out_w.T
        loss = torch.nn.functional.cross_entropy(logits, tokens[1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step > 0:
            times.append(time.perf_counter() - start)
    print(json.dumps({"tokens_per_s": args.seq * len(times) / sum(times), "step_seconds": times,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
