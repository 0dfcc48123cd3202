#!/usr/bin/env bash
# piquant's quantizer against stock llama.cpp's llama-quantize: the same float GGUF, the
# same recipes, the same importance matrix, scored the same way.
#
# How to run, from the project root:
#   cmake --preset release && ninja -C build piquant
#   ctest --test-dir build -R interop_npm_install   # node-llama-cpp into build/interop, once
#   bash bench/compare_quantizer.sh [WORK_DIR]       # default WORK_DIR: build/quant-compare
# The first run builds llama.cpp's tools with bench/build_llama_cpp.sh (~7 minutes on
# 2 cores, cached in build/llama.cpp-native); the rest takes ~2 minutes (defaults).
#
# What it does:
#   1. `piquant imatrix` over IMATRIX_TEXT (IMATRIX_CTX tokens a chunk, IMATRIX_CHUNKS
#      chunks, as examples/default.toml) writes WORK_DIR/imatrix.dat, llama.cpp's legacy
#      imatrix format; llama-quantize reads the same file (if it refuses it, the script
#      stops and shows what it said).
#   2. Each RECIPE, without and with that imatrix, by both `piquant quantize` and
#      `llama-quantize`.
#   3. Mean KL divergence of every file from the float model on EVAL_TEXT (CTX, CHUNKS;
#      the second half of each chunk is scored, as llama-perplexity): `piquant kld`
#      against the base's distributions saved once (--save-logits, then --base-logits),
#      and, as a cross-check with llama.cpp's own evaluator, `llama-perplexity
#      --kl-divergence-base` once and `--kl-divergence` for every file.
#   4. LLAMA_IMATRIX=1 (default): also `llama-imatrix` on the same text, chunks and ctx
#      (--output-format dat), and both quantizers with it (rows "llama-imatrix"), so the
#      quantizer and the imatrix can be told apart.
#   5. Prints a markdown table (quantizer, recipe, imatrix, file size, mean KLD ± stderr,
#      top-1 agreement and perplexity from piquant kld; KLD and same-top-1 from
#      llama-perplexity), the ratio piquant KLD / llama.cpp KLD for each pair, and per
#      pair whether the tensor types agree and how many tensors (and K-quant super-blocks)
#      are byte-identical, read straight from the GGUF files.
# Goal: piquant's Q4_K_M and Q3_K_M with the imatrix have KLD ≤ llama-quantize's.
#
# Settings (environment): PIQUANT (default build/piquant), SHARED (default
# $PIQUANT_SHARED, else ../shared), MODEL (models/default/piquant-default.gguf, F16),
# RECIPES ("Q4_K_M Q3_K_M"), IMATRIX_TEXT ($SHARED/corpora/austen.txt), IMATRIX_CTX
# (256), IMATRIX_CHUNKS (64), EVAL_TEXT ($SHARED/corpora/sotu_1950plus.txt), CTX (256),
# CHUNKS (40), THREADS (2), LLAMA_IMATRIX (1; 0: skip step 4), LLAMA_CPP_BIN (a folder
# holding llama-quantize, llama-imatrix and llama-perplexity; default: what
# bench/build_llama_cpp.sh builds or has built, in LLAMA_CPP_BUILD_DIR).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/build/quant-compare}
piquant=${PIQUANT:-$root/build/piquant}
shared=$(realpath -m "${SHARED:-${PIQUANT_SHARED:-$root/../shared}}")
model=${MODEL:-$root/models/default/piquant-default.gguf}
recipes=${RECIPES:-Q4_K_M Q3_K_M}
imatrix_text=${IMATRIX_TEXT:-$shared/corpora/austen.txt}
imatrix_ctx=${IMATRIX_CTX:-256}
imatrix_chunks=${IMATRIX_CHUNKS:-64}
eval_text=${EVAL_TEXT:-$shared/corpora/sotu_1950plus.txt}
ctx=${CTX:-256}
chunks=${CHUNKS:-40}
threads=${THREADS:-2}
llama_imatrix=${LLAMA_IMATRIX:-1}

[[ -x $piquant ]] || { echo "compare_quantizer.sh: $piquant is not built (ninja -C build piquant, or set PIQUANT)" >&2; exit 1; }
for f in "$model" "$imatrix_text" "$eval_text"; do
  [[ -f $f ]] || { echo "compare_quantizer.sh: $f is missing" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "compare_quantizer.sh: python3 is needed" >&2; exit 1; }
mkdir -p "$work"

if [[ -n ${LLAMA_CPP_BIN:-} ]]; then
  bin=$LLAMA_CPP_BIN
else
  echo "== llama.cpp: bench/build_llama_cpp.sh"
  bash "$root/bench/build_llama_cpp.sh"
  bin=${LLAMA_CPP_BUILD_DIR:-$root/build/llama.cpp-native}/bin
fi
for tool in llama-quantize llama-imatrix llama-perplexity; do
  [[ -x $bin/$tool ]] || { echo "compare_quantizer.sh: $bin/$tool is missing" >&2; exit 1; }
done
echo "== llama.cpp: $("$bin/llama-perplexity" --version 2>&1 | tr "\n" " ")"
echo "== piquant: $("$piquant" --version 2>&1 | head -n 1)"
echo "== model $model; imatrix text $(basename "$imatrix_text") (ctx $imatrix_ctx, $imatrix_chunks chunks);" \
  "evaluation text $(basename "$eval_text") (ctx $ctx, $chunks chunks); $threads threads"

# --- 1. the importance matrices ---
echo "== piquant imatrix → $work/imatrix.dat"
"$piquant" -q imatrix -m "$model" -f "$imatrix_text" --ctx "$imatrix_ctx" --chunks "$imatrix_chunks" \
  -t "$threads" -o "$work/imatrix.dat" --json >"$work/imatrix.json"
imatrices="no piquant"
if [[ $llama_imatrix == 1 ]]; then
  echo "== llama-imatrix → $work/imatrix-llama.dat"
  "$bin/llama-imatrix" -m "$model" -f "$imatrix_text" -c "$imatrix_ctx" --chunks "$imatrix_chunks" -t "$threads" \
    --no-ppl --output-format dat -o "$work/imatrix-llama.dat" >"$work/imatrix-llama.log" 2>&1 ||
    { tail -n 20 "$work/imatrix-llama.log" >&2; echo "compare_quantizer.sh: llama-imatrix failed" >&2; exit 1; }
  imatrices="$imatrices llama-imatrix"
fi

# --- base distributions, once per evaluator ---
echo "== base distributions: piquant kld --save-logits, llama-perplexity --kl-divergence-base"
"$piquant" -q kld --base "$model" -m "$model" -f "$eval_text" --ctx "$ctx" --chunks "$chunks" -t "$threads" \
  --save-logits "$work/base.logits" --json >"$work/kld-base.json"
"$bin/llama-perplexity" -m "$model" -f "$eval_text" -c "$ctx" --chunks "$chunks" -t "$threads" \
  --kl-divergence-base "$work/base.llama-kld" >"$work/ppl-base.log" 2>&1 ||
  { tail -n 20 "$work/ppl-base.log" >&2; echo "compare_quantizer.sh: llama-perplexity (base) failed" >&2; exit 1; }

# --- 2, 3. quantize with both, score every file with both evaluators ---
rows=$work/rows.tsv
: >"$rows"
for recipe in $recipes; do
  for imx in $imatrices; do
    case $imx in
      no) pq_args=() ll_args=() ;;
      piquant) pq_args=(--imatrix "$work/imatrix.dat") ll_args=(--imatrix "$work/imatrix.dat") ;;
      llama-imatrix) pq_args=(--imatrix "$work/imatrix-llama.dat") ll_args=(--imatrix "$work/imatrix-llama.dat") ;;
    esac
    for quantizer in piquant llama.cpp; do
      name=$quantizer-$recipe-$imx
      out=$work/$name.gguf
      echo "== $name"
      if [[ $quantizer == piquant ]]; then
        "$piquant" -q quantize "$model" "$out" "$recipe" "${pq_args[@]}" -t "$threads"
      else
        "$bin/llama-quantize" "${ll_args[@]}" "$model" "$out" "$recipe" "$threads" >"$work/$name.quantize.log" 2>&1 || {
          tail -n 20 "$work/$name.quantize.log" >&2
          echo "compare_quantizer.sh: llama-quantize failed on $name (log: $work/$name.quantize.log)" >&2
          exit 1
        }
        if [[ $imx != no ]]; then
          # llama-quantize reads a legacy (.dat) or GGUF imatrix; say whether it took this one.
          grep -m1 "importance matrix entries" "$work/$name.quantize.log" | sed 's/^/   llama-quantize: /' || {
            grep -i "imatrix" "$work/$name.quantize.log" >&2 || true
            echo "compare_quantizer.sh: llama-quantize did not load the imatrix for $name (log: $work/$name.quantize.log)" >&2
            exit 1
          }
        fi
      fi
      "$piquant" -q kld --base-logits "$work/base.logits" -m "$out" -f "$eval_text" --ctx "$ctx" --chunks "$chunks" \
        -t "$threads" --json >"$work/$name.kld.json"
      "$bin/llama-perplexity" -m "$out" -f "$eval_text" -c "$ctx" --chunks "$chunks" -t "$threads" \
        --kl-divergence-base "$work/base.llama-kld" --kl-divergence >"$work/$name.ppl.log" 2>&1 ||
        { tail -n 20 "$work/$name.ppl.log" >&2; echo "compare_quantizer.sh: llama-perplexity failed on $name" >&2; exit 1; }
      printf '%s\t%s\t%s\t%s\n' "$quantizer" "$recipe" "$imx" "$name" >>"$rows"
    done
  done
done

# --- 5. the tables ---
python3 - "$work" "$rows" "$work/kld-base.json" <<'EOF'
import json, os, re, struct, sys

work, rows_path, base_json = sys.argv[1:]
rows = [line.rstrip("\n").split("\t") for line in open(rows_path) if line.strip()]

def llama_kld(log):
    text = open(log, errors="replace").read()
    def grab(pattern):
        m = re.search(pattern, text)
        return (float(m.group(1)), float(m.group(2))) if m else (float("nan"), float("nan"))
    return {"kld": grab(r"Mean\s+KLD:\s*([-\d.eE+]+)\s*±\s*([-\d.eE+]+)"),
            "top1": grab(r"Same top p:\s*([-\d.eE+]+)\s*±\s*([-\d.eE+]+)"),
            "ppl": grab(r"Mean PPL\(Q\)\s*:\s*([-\d.eE+]+)\s*±\s*([-\d.eE+]+)"),
            "final": grab(r"Final estimate: PPL = ([-\d.eE+]+) \+/- ([-\d.eE+]+)")}

res = {}
for quantizer, recipe, imx, name in rows:
    r = json.load(open(os.path.join(work, name + ".kld.json")))
    r["size"] = os.path.getsize(os.path.join(work, name + ".gguf"))
    r["llama"] = llama_kld(os.path.join(work, name + ".ppl.log"))
    res[(quantizer, recipe, imx)] = r

base = json.load(open(base_json))
ll_base = llama_kld(os.path.join(work, "ppl-base.log"))
print()
print(f"Float model: PPL {base['ppl_base']:.3f} ± {base['ppl_base_stderr']:.3f} (piquant kld), "
      f"{ll_base['final'][0]:.3f} ± {ll_base['final'][1]:.3f} (llama-perplexity); "
      f"{base['n_scored']} scored tokens in {base['n_chunks']} chunks of {base['n_ctx']}")
print()
print("| quantizer | recipe | imatrix | size (bytes) | mean KLD ± stderr (piquant kld) | top-1 agreement | PPL "
      "| mean KLD ± stderr (llama-perplexity) | same top-1 (llama-perplexity) |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for quantizer, recipe, imx, name in rows:
    r = res[(quantizer, recipe, imx)]
    ll = r["llama"]
    print(f"| {quantizer} | {recipe} | {imx} | {r['size']} | {r['kld_mean']:.5f} ± {r['kld_stderr']:.5f} | "
          f"{r['top1_agreement']:.4f} | {r['ppl_model']:.3f} | {ll['kld'][0]:.5f} ± {ll['kld'][1]:.5f} | "
          f"{ll['top1'][0] / 100:.4f} |")

print()
print("| recipe | imatrix | KLD piquant / llama.cpp (piquant kld) | (llama-perplexity) | piquant ≤ llama.cpp |")
print("| --- | --- | ---: | ---: | --- |")
seen = []
for quantizer, recipe, imx, name in rows:
    if (recipe, imx) in seen:
        continue
    seen.append((recipe, imx))
    p, l = res.get(("piquant", recipe, imx)), res.get(("llama.cpp", recipe, imx))
    if not p or not l:
        continue
    r1 = p["kld_mean"] / l["kld_mean"] if l["kld_mean"] > 0 else float("nan")
    r2 = p["llama"]["kld"][0] / l["llama"]["kld"][0] if l["llama"]["kld"][0] > 0 else float("nan")
    ok = "yes" if p["kld_mean"] <= l["kld_mean"] and p["llama"]["kld"][0] <= l["llama"]["kld"][0] else \
         "no" if p["kld_mean"] > l["kld_mean"] and p["llama"]["kld"][0] > l["llama"]["kld"][0] else "mixed"
    print(f"| {recipe} | {imx} | {r1:.3f} | {r2:.3f} | {ok} |")

# GGUF tensors: type and bytes of each, straight from the file.
BLOCK = {0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32), 10: (84, 256),
         11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256), 30: (2, 1)}
TYPE = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 10: "q2_K", 11: "q3_K",
        12: "q4_K", 13: "q5_K", 14: "q6_K", 30: "bf16"}

def read_gguf(path):
    data = open(path, "rb").read()
    pos = 0
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]
    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])
    assert data[:4] == b"GGUF", path
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append((name, dims, take("I"), take("Q")))
    align = kv.get("general.alignment", 32)
    start = (pos + align - 1) // align * align
    out = {}
    for name, dims, t, off in infos:
        n = 1
        for d in dims:
            n *= d
        bs, be = BLOCK[t]
        nbytes = n // be * bs
        out[name] = (t, data[start + off:start + off + nbytes])
    return out

print()
print("Tensors, piquant's file against llama-quantize's (same recipe and imatrix):")
print()
print("| recipe | imatrix | tensors | same type | byte-identical tensors | identical super-blocks (quantized, same type) | type differences |")
print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
for recipe, imx in seen:
    if ("piquant", recipe, imx) not in res or ("llama.cpp", recipe, imx) not in res:
        continue
    a = read_gguf(os.path.join(work, f"piquant-{recipe}-{imx}.gguf"))
    b = read_gguf(os.path.join(work, f"llama.cpp-{recipe}-{imx}.gguf"))
    names = sorted(set(a) | set(b))
    same_type = identical = blocks = blocks_same = 0
    diffs = []
    for n in names:
        if n not in a or n not in b:
            diffs.append(f"{n}: only in {'piquant' if n in a else 'llama.cpp'}")
            continue
        (ta, da), (tb, db) = a[n], b[n]
        if ta != tb:
            diffs.append(f"{n} {TYPE.get(ta, ta)}/{TYPE.get(tb, tb)}")
            continue
        same_type += 1
        identical += da == db
        bs, be = BLOCK[ta]
        if be > 1:
            nb = len(da) // bs
            blocks += nb
            blocks_same += sum(da[i * bs:(i + 1) * bs] == db[i * bs:(i + 1) * bs] for i in range(nb))
    share = f"{blocks_same}/{blocks} ({100 * blocks_same / blocks:.1f}%)" if blocks else "-"
    print(f"| {recipe} | {imx} | {len(names)} | {same_type} | {identical} | {share} | "
          f"{'; '.join(diffs) if diffs else 'none'} |")
    with open(os.path.join(work, f"tensors-{recipe}-{imx}.tsv"), "w") as f:
        f.write("tensor\tpiquant type\tllama.cpp type\tbyte-identical\n")
        for n in names:
            if n in a and n in b:
                f.write(f"{n}\t{TYPE.get(a[n][0], a[n][0])}\t{TYPE.get(b[n][0], b[n][0])}\t{a[n][1] == b[n][1]}\n")
print()
print(f"(per-tensor detail: {work}/tensors-RECIPE-IMATRIX.tsv; logs of llama.cpp's tools: {work}/*.log)")
EOF
