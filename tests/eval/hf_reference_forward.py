#!/usr/bin/python3
"""Reference forward pass of a Hugging Face Llama checkpoint, in numpy float64.

Written from the Hugging Face formulation of LlamaForCausalLM, independently of
piquant's engine and converter: weights straight from the safetensors files in the
checkpoint's own (HF) row order, RoPE by rotate_half over the two halves of each
head with the llama3-scaled inverse frequencies, RMSNorm, GQA by repeating each KV
head for its group of query heads, causal softmax attention, SwiGLU MLP, lm_head.

usage: hf_reference_forward.py MODEL_DIR TOKEN_IDS_JSON OUT.f32 [--variant V]
  Writes the logits of every position (n_tokens x vocab_size, little-endian float32)
  to OUT.f32 and prints {"n_tokens": ..., "n_vocab": ...}.
  --variant breaks the reference on purpose, for tests that must tell it apart:
    interleaved      rotate pairs (2i, 2i+1) instead of the halves (GGUF's pairing)
    no-rope-scaling  plain rope_theta frequencies, ignoring rope_scaling
"""
import json
import math
import pathlib
import sys

import numpy as np


def read_safetensors(path):
    data = path.read_bytes()
    (header_len,) = np.frombuffer(data[:8], dtype="<u8")
    header = json.loads(data[8:8 + int(header_len)])
    body = data[8 + int(header_len):]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = body[begin:end]
        dtype = info["dtype"]
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            values = bits.view(np.float32)
        elif dtype == "F16":
            values = np.frombuffer(raw, dtype="<f2")
        elif dtype == "F32":
            values = np.frombuffer(raw, dtype="<f4")
        else:
            raise SystemExit(f"{path}: {name}: unsupported dtype {dtype}")
        tensors[name] = values.astype(np.float64).reshape(info["shape"])
    return tensors


def load_weights(model_dir):
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in model_dir.glob("*.safetensors"))
    weights = {}
    for name in files:
        weights.update(read_safetensors(model_dir / name))
    return weights


def inverse_frequencies(config, head_dim, variant):
    inv_freq = 1.0 / (config.get("rope_theta", 10000.0) ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    scaling = config.get("rope_scaling") or {}
    if variant == "no-rope-scaling" or scaling.get("rope_type", scaling.get("type")) != "llama3":
        return inv_freq
    # Llama 3.1: long wavelengths slowed down by `factor`, short ones kept, and a
    # smooth blend in between.
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    wavelength = 2 * math.pi / inv_freq
    scaled = np.where(wavelength > old_context / low, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelength - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelength >= old_context / high) & (wavelength <= old_context / low)
    return np.where(medium, blended, scaled)


def rotate(x, cos, sin, variant):
    # x: (tokens, heads, head_dim); cos/sin: (tokens, head_dim/2)
    c, s = cos[:, None, :], sin[:, None, :]
    if variant == "interleaved":
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = even * c - odd * s
        out[..., 1::2] = even * s + odd * c
        return out
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    rotated_half = np.concatenate([-second, first], axis=-1)  # HF rotate_half
    return x * np.concatenate([c, c], axis=-1) + rotated_half * np.concatenate([s, s], axis=-1)


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def forward(config, w, tokens, variant):
    n_embd = config["hidden_size"]
    n_head = config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads", n_head)
    head_dim = config.get("head_dim") or n_embd // n_head
    eps = config.get("rms_norm_eps", 1e-6)
    n = len(tokens)

    angles = np.outer(np.arange(n, dtype=np.float64), inverse_frequencies(config, head_dim, variant))
    cos, sin = np.cos(angles), np.sin(angles)
    causal = np.triu(np.full((n, n), -np.inf), k=1)

    x = w["model.embed_tokens.weight"][tokens]
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(n, n_head, head_dim)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(n, n_head_kv, head_dim)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(n, n_head_kv, head_dim)
        q, k = rotate(q, cos, sin, variant), rotate(k, cos, sin, variant)
        group = n_head // n_head_kv
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # HF repeat_kv
        scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(head_dim) + causal
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        attention = np.einsum("hts,shd->thd", probs, v).reshape(n, n_head * head_dim)
        x = x + attention @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight")
    if head is None or config.get("tie_word_embeddings", False):
        head = w["model.embed_tokens.weight"]
    return x @ head.T


def main(argv):
    variant = None
    if "--variant" in argv:
        i = argv.index("--variant")
        variant = argv[i + 1]
        del argv[i:i + 2]
        if variant not in ("interleaved", "no-rope-scaling"):
            raise SystemExit(f"unknown --variant {variant}")
    if len(argv) != 4:
        raise SystemExit(__doc__)
    model_dir, tokens, out = pathlib.Path(argv[1]), json.loads(argv[2]), pathlib.Path(argv[3])
    config = json.loads((model_dir / "config.json").read_text())
    logits = forward(config, load_weights(model_dir), np.asarray(tokens, dtype=np.int64), variant)
    out.write_bytes(logits.astype("<f4").tobytes())
    print(json.dumps({"n_tokens": logits.shape[0], "n_vocab": logits.shape[1]}))


if __name__ == "__main__":
    main(sys.argv)
