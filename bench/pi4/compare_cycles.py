#!/usr/bin/env python3
"""Compares a freshly generated Pi 4 kernel cycle table with the committed one.

    compare_cycles.py FRESH.inc COMMITTED.inc [--tolerance 0.03] [--floor 1.0]

Called by `kernel_cycles.sh --check` (scripts/test.sh's Pi 4 step). Both files hold rows
"{GgmlType::T, weights, cycles/block, cycles/row, instructions/block},". The tables
agree when they list the same types with the same weights per block, and each of the
three numbers differs by at most max(tolerance x committed, floor): 3% by default, and
at least one cycle (or instruction), since the fixed cost per row is a small difference
of two large llvm-mca totals. A kernel change that moves a number by more fails; so can
a compiler or LLVM update, which is why this is a named step and not a unit test.
Prints every row's differences; exits 1 when a row is out of tolerance, 2 on bad input.
"""
import argparse
import re
import sys

ROW = re.compile(r"^\{GgmlType::(\w+),\s*(\d+),\s*([-0-9.]+),\s*([-0-9.]+),\s*([-0-9.]+)\},\s*$")
COLUMNS = ("cycles/block", "cycles/row", "insns/block")


def bad_input(message):
    print(f"compare_cycles.py: {message}", file=sys.stderr)
    sys.exit(2)


def read_table(path):
    rows = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue  # comments: versions and date differ by design
            m = ROW.match(line.strip())
            if not m:
                bad_input(f"{path}: unreadable row: {line.strip()}")
            name = m.group(1)
            if name in rows:
                bad_input(f"{path}: {name} listed twice")
            rows[name] = (int(m.group(2)), tuple(float(m.group(i)) for i in (3, 4, 5)))
    if not rows:
        bad_input(f"{path}: no table rows")
    return rows


def compare(fresh, committed, tolerance, floor):
    """Lines of the report and whether every row agrees."""
    ok = True
    lines = []
    for name in sorted(set(fresh) - set(committed)):
        lines.append(f"{name}: in the fresh table, not in the committed one")
        ok = False
    for name in sorted(set(committed) - set(fresh)):
        lines.append(f"{name}: in the committed table, not in the fresh one")
        ok = False
    header = f"{'type':6} " + " ".join(f"{c + ' committed -> fresh (diff)':>42}" for c in COLUMNS)
    lines.append(header)
    for name in [n for n in committed if n in fresh]:
        (w_new, new), (w_old, old) = fresh[name], committed[name]
        if w_new != w_old:
            lines.append(f"{name}: {w_old} weights per block committed, {w_new} fresh")
            ok = False
            continue
        cells, bad = [], []
        for column, a, b in zip(COLUMNS, old, new):
            limit = max(tolerance * abs(a), floor)
            diff = b - a
            pct = f"{100.0 * diff / a:+.1f}%" if a else "n/a"
            mark = ""
            if abs(diff) > limit:
                mark = " !"
                bad.append(f"{column} {a:.3f} -> {b:.3f} (limit +-{limit:.3f})")
            cells.append(f"{f'{a:.3f} -> {b:.3f} ({pct}){mark}':>42}")
        lines.append(f"{name:6} " + " ".join(cells))
        if bad:
            ok = False
    return lines, ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fresh")
    ap.add_argument("committed")
    ap.add_argument("--tolerance", type=float, default=0.03, help="relative, per number (default 0.03)")
    ap.add_argument("--floor", type=float, default=1.0, help="smallest allowed absolute difference (default 1)")
    args = ap.parse_args()
    if args.tolerance < 0 or args.floor < 0:
        bad_input("tolerance and floor must be 0 or more")
    lines, ok = compare(read_table(args.fresh), read_table(args.committed), args.tolerance, args.floor)
    print("\n".join(lines))
    if ok:
        print(f"Pi 4 cycle table: within +-{100 * args.tolerance:g}% (at least +-{args.floor:g}) of {args.committed}")
        return 0
    print(f"Pi 4 cycle table: {args.committed} is out of date (rows marked !): "
          f"run bench/pi4/kernel_cycles.sh to regenerate it, and check the projection's numbers")
    return 1


if __name__ == "__main__":
    sys.exit(main())
