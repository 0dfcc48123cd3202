#!/usr/bin/python3
"""An independent reference for piquant's training pass: a Llama forward pass written
in PyTorch (float64, autograd), over a Hugging Face checkpoint folder (config.json +
model.safetensors), with a LoRA adapter on q, k, v, o, gate, up, down of every layer.

  torch_lora_reference.py MODEL_DIR BATCH_JSON OUT_DIR [--rank R] [--alpha A] [--seed S]

BATCH_JSON: {"inputs": [...], "targets": [...], "weights": [...]} (one sequence;
target -1: no loss). The loss is sum_t weights[t] * (logsumexp(z_t) - z_t[target_t]).

Writes into OUT_DIR:
  adapter/adapter_model.safetensors + adapter/adapter_config.json   the random adapter (PEFT layout)
  grads.safetensors   d loss / d lora_A and lora_B, named like the adapter's tensors (F32)
  merged.safetensors  W + alpha/r * B @ A for every adapted weight, HF names (F32)
  loss.json           {"loss": ...}
Only numpy and torch; safetensors are read and written by hand (the format is a JSON
header and raw little-endian arrays).
"""
import argparse
import json
import math
import os
import struct

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": None}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        raw = data[base + lo:base + hi]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=DTYPES[info["dtype"]])
        out[name] = torch.tensor(arr.astype(np.float64).reshape(info["shape"]))
    return out


def write_safetensors(path, tensors, dtype):
    names = sorted(tensors)
    header, blobs, offset = {}, [], 0
    np_type, tag = (np.float32, "F32") if dtype == "F32" else (np.float64, "F64")
    for name in names:
        arr = tensors[name].detach().numpy().astype(np_type)
        blob = arr.tobytes()
        header[name] = {"dtype": tag, "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def inv_freq(config, head_dim):
    base = config.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    s = config.get("rope_scaling")
    if s and s.get("rope_type", s.get("type")) == "llama3":
        factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old = s["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        out = []
        for f in inv.tolist():
            wavelen = 2 * math.pi / f
            if wavelen < high_wavelen:
                out.append(f)
            elif wavelen > low_wavelen:
                out.append(f / factor)
            else:
                smooth = (old / wavelen - low) / (high - low)
                out.append((1 - smooth) * f / factor + smooth * f)
        inv = torch.tensor(out, dtype=torch.float64)
    return inv


def rotate(x, cos, sin):  # x: (T, heads, D), Hugging Face's half-split pairs
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("batch")
    ap.add_argument("out_dir")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    config = json.load(open(os.path.join(args.model_dir, "config.json")))
    w = {}
    for fname in sorted(os.listdir(args.model_dir)):
        if fname.endswith(".safetensors"):
            w.update(read_safetensors(os.path.join(args.model_dir, fname)))
    batch = json.load(open(args.batch))
    E = config["hidden_size"]
    H = config["num_attention_heads"]
    KV = config.get("num_key_value_heads", H)
    D = config.get("head_dim", E // H)
    L = config["num_hidden_layers"]
    eps = config.get("rms_norm_eps", 1e-5)

    gen = torch.Generator().manual_seed(args.seed)
    modules = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
               "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
    lora = {}
    for l in range(L):
        for m, block in modules.items():
            W = w[f"model.layers.{l}.{block}.{m}.weight"]
            out_f, in_f = W.shape
            prefix = f"base_model.model.model.layers.{l}.{block}.{m}"
            A = (torch.randn(args.rank, in_f, generator=gen, dtype=torch.float64) * 0.2).float().double()
            B = (torch.randn(out_f, args.rank, generator=gen, dtype=torch.float64) * 0.2).float().double()
            lora[prefix + ".lora_A.weight"] = A.requires_grad_(True)
            lora[prefix + ".lora_B.weight"] = B.requires_grad_(True)
    scale = args.alpha / args.rank

    def linear(name, x):
        l_block_m = name[len("model."):-len(".weight")]
        prefix = "base_model.model.model." + l_block_m
        y = x @ w[name].T
        if prefix + ".lora_A.weight" in lora:
            y = y + scale * (x @ lora[prefix + ".lora_A.weight"].T) @ lora[prefix + ".lora_B.weight"].T
        return y

    def rms(x, weight):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * weight

    inputs = torch.tensor(batch["inputs"])
    T = len(batch["inputs"])
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq(config, D))
    cos, sin = freqs.cos()[:, None, :], freqs.sin()[:, None, :]
    x = w["model.embed_tokens.weight"][inputs]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(L):
        p = f"model.layers.{l}"
        n = rms(x, w[p + ".input_layernorm.weight"])
        q = rotate(linear(p + ".self_attn.q_proj.weight", n).view(T, H, D), cos, sin)
        k = rotate(linear(p + ".self_attn.k_proj.weight", n).view(T, KV, D), cos, sin)
        v = linear(p + ".self_attn.v_proj.weight", n).view(T, KV, D)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(D) + mask
        att = torch.einsum("hts,shd->thd", scores.softmax(-1), v).reshape(T, H * D)
        x = x + linear(p + ".self_attn.o_proj.weight", att)
        n = rms(x, w[p + ".post_attention_layernorm.weight"])
        g = linear(p + ".mlp.gate_proj.weight", n)
        u = linear(p + ".mlp.up_proj.weight", n)
        x = x + linear(p + ".mlp.down_proj.weight", torch.nn.functional.silu(g) * u)
    n = rms(x, w["model.norm.weight"])
    out_w = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    logits = n @ out_w.T
    loss = torch.zeros((), dtype=torch.float64)
    for t in range(T):
        if batch["targets"][t] >= 0 and batch["weights"][t] != 0:
            loss = loss + batch["weights"][t] * (torch.logsumexp(logits[t], 0) - logits[t, batch["targets"][t]])
    loss.backward()

    os.makedirs(os.path.join(args.out_dir, "adapter"), exist_ok=True)
    write_safetensors(os.path.join(args.out_dir, "adapter", "adapter_model.safetensors"),
                      {k: v.detach() for k, v in lora.items()}, "F32")
    json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": args.rank, "lora_alpha": args.alpha,
               "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_rslora": False,
               "target_modules": sorted(modules), "base_model_name_or_path": args.model_dir},
              open(os.path.join(args.out_dir, "adapter", "adapter_config.json"), "w"), indent=2)
    write_safetensors(os.path.join(args.out_dir, "grads.safetensors"), {k: v.grad for k, v in lora.items()}, "F32")
    merged = {}
    for l in range(L):
        for m, block in modules.items():
            name = f"model.layers.{l}.{block}.{m}.weight"
            prefix = f"base_model.model.model.layers.{l}.{block}.{m}"
            merged[name] = w[name] + scale * lora[prefix + ".lora_B.weight"].detach() @ lora[prefix + ".lora_A.weight"].detach()
    write_safetensors(os.path.join(args.out_dir, "merged.safetensors"), merged, "F32")
    json.dump({"loss": loss.item()}, open(os.path.join(args.out_dir, "loss.json"), "w"))


if __name__ == "__main__":
    main()
