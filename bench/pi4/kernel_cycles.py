#!/usr/bin/env python3
"""Turns the instruction traces of bench/pi4/kernel_loops.cpp into cycles per block.

Called by kernel_cycles.sh (see there) with the static aarch64 driver it built. Runs it
under qemu-aarch64 -singlestep -d exec,nochain, logging only the kernels' code (the
piq_* wrappers and Highway's N_NEON namespace), and reads its stdout: one line
"TYPE N1 N2" per kernel, in call order. The driver calls piq_trace_mark() before, between and after the two calls of each
kernel (rows of N1 and N2 blocks). The instructions executed between two marks (without
the driver's own) are that call's exact dynamic path: loops unrolled as they ran,
branches resolved as decode resolves them. llvm-mca simulates each path on the
Cortex-A72 model; cycles per block = (cycles(N2) - cycles(N1)) / (N2 - N1), the row's
fixed cost (setup, horizontal sums) = cycles(N1) - N1 * cycles per block.
"""
import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile

ITERATIONS = 4  # each trace replayed back to back: a row after a row, as decode runs them
WEIGHTS = {"Q8_0": 32, "Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32,
           "Q2_K": 256, "Q3_K": 256, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}
# Not on the Pi 4's BCM2711 (no crypto extension): a kernel using them would not run there.
CRYPTO = re.compile(r"^(aes|pmull|sha1|sha256|sha512|sm3|sm4|eor3|rax1|xar|bcax)")


def fail(message):
    sys.exit(f"kernel_cycles.py: {message}")


def read_disasm(path):
    """Address -> instruction text, and symbol name -> (start, end)."""
    insns, symbols, order = {}, {}, []
    sym_re = re.compile(r"^([0-9a-f]+) <(.+)>:$")
    insn_re = re.compile(r"^\s*([0-9a-f]+):\s+(.*)$")
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            m = sym_re.match(line)
            if m:
                order.append((int(m.group(1), 16), m.group(2)))
                continue
            m = insn_re.match(line)
            if m:
                insns[int(m.group(1), 16)] = m.group(2).strip()
    order.sort()
    for i, (start, name) in enumerate(order):
        end = order[i + 1][0] if i + 1 < len(order) else start + 4
        symbols.setdefault(name, (start, end))
    return insns, symbols


def for_mca(text):
    """An objdump instruction as llvm-mca's assembler takes it: addresses (branch and
    literal targets, never '#' immediates) become '.', comments go."""
    text = text.split("//")[0].strip()
    text = re.sub(r"(?<![#\w])0x[0-9a-f]+(\s*<[^>]*>)?", ".", text)
    return text.replace("\t", " ")


def traced_ranges(symbols):
    """The code whose execution is logged: the driver's wrappers, its mark, the kernels."""
    ranges = sorted(r for name, r in symbols.items() if name.startswith("piq_") or "N_NEON" in name)
    merged = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


BRANCH_TARGET = re.compile(r"^(b|bl|b\.\w+|cbn?z|tbn?z)\s.*?(?<![#\w])0x([0-9a-f]+)")


def check_stays_inside(text, pc, ranges):
    """A call or jump out of the logged code would drop instructions from the trace."""
    if re.match(r"^(blr|br)\s", text):
        fail(f"indirect branch '{text}' at {pc:#x}: its target may lie outside the traced code")
    m = BRANCH_TARGET.match(text)
    if m and not any(lo <= int(m.group(2), 16) < hi for lo, hi in ranges):
        fail(f"'{text}' at {pc:#x} leaves the traced code (add its target's symbol to traced_ranges)")


def read_trace(path, mark_pc, skip_ranges):
    """The PCs executed between consecutive calls of the mark, without the skipped code."""
    pc_re = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
    segments, current = [], None
    with open(path) as f:
        for line in f:
            m = pc_re.match(line)
            if not m:
                continue
            pc = int(m.group(1), 16)
            if pc == mark_pc:
                if current is not None:
                    segments.append(current)
                current = []
                continue
            if current is None or any(lo <= pc < hi for lo, hi in skip_ranges):
                continue
            current.append(pc)
    return segments


def mca_cycles(mca, trace_lines, workdir, name):
    path = os.path.join(workdir, f"{name}.s")
    with open(path, "w") as f:
        f.write("\n".join(trace_lines) + "\n")
    result = subprocess.run([mca, "-mtriple=aarch64-linux-gnu", "-mcpu=cortex-a72", f"-iterations={ITERATIONS}",
                             "-instruction-info=0", "-resource-pressure=0", path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"llvm-mca failed on {path}: {result.stderr.strip()[:2000]}")
    m_it = re.search(r"^Iterations:\s+(\d+)", result.stdout, re.M)
    m_cy = re.search(r"^Total Cycles:\s+(\d+)", result.stdout, re.M)
    if not m_it or not m_cy:
        fail(f"no 'Iterations'/'Total Cycles' in llvm-mca's output for {path}")
    return int(m_cy.group(1)) / int(m_it.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True, help="the static aarch64 kernel_loops driver")
    ap.add_argument("--objdump", default="llvm-objdump")
    ap.add_argument("--qemu", default="qemu-aarch64")
    ap.add_argument("--mca", default="llvm-mca")
    ap.add_argument("--out", required=True, help="the .inc table to write")
    ap.add_argument("--versions", required=True, help="one line: compiler and llvm-mca versions")
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()

    disasm = os.path.join(args.workdir, "disasm.txt")
    with open(disasm, "w") as f:
        subprocess.run([args.objdump, "-d", "--no-show-raw-insn", args.binary], stdout=f, check=True)
    insns, symbols = read_disasm(disasm)
    if "piq_trace_mark" not in symbols:
        fail(f"symbol piq_trace_mark missing from {args.binary}")
    ranges = traced_ranges(symbols)
    trace = os.path.join(args.workdir, "trace.log")
    dfilter = ",".join(f"{lo:#x}..{hi - 1:#x}" for lo, hi in ranges)
    # Rows of 16 and 32 super-blocks (4096 and 8192 columns; 128 and 256 legacy blocks).
    run = subprocess.run([args.qemu, "-cpu", "cortex-a72", "-singlestep", "-d", "exec,nochain", "-dfilter", dfilter,
                          "-D", trace, args.binary, "16", "32"], capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"{args.binary} under {args.qemu} failed: {run.stderr.strip()[:2000]}")
    mark_pc = symbols["piq_trace_mark"][0]
    segments = read_trace(trace, mark_pc, [symbols["piq_trace_mark"]])

    plan = []
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in WEIGHTS:
            plan.append((parts[0], int(parts[1]), int(parts[2])))
    if not plan:
        fail(f"no kernels in the output of {args.binary}")
    # Marks: before, between, after each kernel's two calls; the segment after the
    # third mark of a kernel (up to the next kernel's first) is driver code, dropped.
    if len(segments) < 3 * len(plan) - 1:
        fail(f"{len(segments)} trace segments for {len(plan)} kernels in {trace}")

    rows = []
    for i, (name, n1, n2) in enumerate(plan):
        entry = symbols.get(f"piq_row_{name}")
        if entry is None:
            fail(f"symbol piq_row_{name} missing")
        costs, lengths = [], []
        for j, n in ((0, n1), (1, n2)):
            pcs = segments[3 * i + j]
            if not pcs or pcs[0] != entry[0]:
                fail(f"trace of {name} ({n} blocks) does not start at piq_row_{name}")
            lines = []
            for pc in pcs:
                if pc not in insns:
                    fail(f"executed address {pc:#x} not in the disassembly")
                check_stays_inside(insns[pc], pc, ranges)
                text = for_mca(insns[pc])
                if CRYPTO.match(text):
                    fail(f"{name} executes '{text}', which the Pi 4's Cortex-A72 lacks (no crypto extension)")
                lines.append(text)
            costs.append(mca_cycles(args.mca, lines, args.workdir, f"{name}_{n}"))
            lengths.append(len(lines))
        per_block = (costs[1] - costs[0]) / (n2 - n1)
        per_row = costs[0] - n1 * per_block
        insns_per_block = (lengths[1] - lengths[0]) / (n2 - n1)
        rows.append((name, WEIGHTS[name], per_block, per_row, insns_per_block, n1))

    date = datetime.date.today().isoformat()
    body = [
        "// Generated by bench/pi4/kernel_cycles.sh: do not edit, re-run it when the kernels change",
        "// (scripts/test.sh checks it with bench/pi4/kernel_cycles.sh --check, within 3%).",
        f"// {args.versions.strip()}; {date}.",
        "// Cortex-A72 cycles of piquant's NEON decode kernels (one token's Q8 activations against",
        "// one weight row): llvm-mca -mcpu=cortex-a72 on the instructions each kernel executed",
        "// (traced under qemu-user) for rows of N1 and N2 blocks. Block: 32 weights (legacy",
        "// types) or a 256-weight super-block (K types). Columns: type, weights per block, cycles",
        "// per block (marginal), fixed cycles per row (at N1 blocks), instructions per block.",
    ]
    for name, weights, per_block, per_row, ipb, _ in rows:
        body.append(f"{{GgmlType::{name}, {weights}, {per_block:.3f}, {per_row:.3f}, {ipb:.3f}}},")
    tmp = tempfile.NamedTemporaryFile("w", dir=os.path.dirname(os.path.abspath(args.out)), delete=False,
                                      prefix=".pi4_kernel_cycles.", suffix=".tmp")
    with tmp:
        tmp.write("\n".join(body) + "\n")
    os.replace(tmp.name, args.out)  # never a half-written table under its name

    print(f"Cortex-A72 (llvm-mca) cycles of piquant's NEON decode kernels, {args.versions.strip()}")
    print(f"{'type':6} {'weights/blk':>11} {'insns/blk':>9} {'cycles/blk':>10} {'cycles/weight':>13} {'cycles/row':>10}")
    for name, weights, per_block, per_row, ipb, n1 in rows:
        print(f"{name:6} {weights:11d} {ipb:9.1f} {per_block:10.2f} {per_block / weights:13.3f} {per_row:10.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
