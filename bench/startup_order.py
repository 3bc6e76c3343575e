#!/usr/bin/env python3
"""The functions of a binary that callgrind saw run, in groups, for a linker ordering file.

Usage: startup_order.py BINARY OUT CALLGRIND_OUT [CALLGRIND_OUT ...]

Each CALLGRIND_OUT (written with --dump-instr=yes) is one group: the functions of BINARY that
ran in it and in no earlier group are listed after the earlier groups'. Names are the symbols
as the linker knows them (mangled). Prints, per group, how many functions and how many of the
binary's 4 KiB pages and 64 KiB windows (what the kernel maps around a page fault) they touch.
"""
import bisect
import os
import re
import subprocess
import sys


def executed_addresses(path, binary):
    """Instruction addresses of `binary` with a cost in one callgrind output."""
    names, inside, last, found = {}, False, 0, set()
    with open(path) as f:
        for line in f:
            m = re.match(r"^(c?)ob=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3)
                if not m.group(1):
                    inside = os.path.realpath(names.get(m.group(2), "")) == binary
                continue
            if not line or line[0] not in "0123456789+-*":
                continue
            tok = line.split()[0]
            if tok.startswith("0x"):
                addr = int(tok, 16)
            elif tok[0] in "+-":
                addr = last + int(tok)
            elif tok == "*":
                addr = last
            else:
                continue  # a line number without an address: not --dump-instr output
            last = addr
            if inside:
                found.add(addr)
    return found


def main():
    binary, out, groups = os.path.realpath(sys.argv[1]), sys.argv[2], sys.argv[3:]
    symbols = []
    listing = subprocess.run(["nm", "-S", binary], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        p = line.split(" ", 3)
        if len(p) == 4 and p[0] and p[2] in ("t", "T"):
            symbols.append((int(p[0], 16), int(p[1], 16), p[3]))
    symbols.sort()
    starts = [s[0] for s in symbols]
    listed, order = set(), []
    for path in groups:
        addresses = executed_addresses(path, binary)
        ran = set()
        for a in addresses:
            i = bisect.bisect_right(starts, a) - 1
            if i >= 0 and a < starts[i] + symbols[i][1]:
                ran.add(symbols[i][2])
        new = sorted(ran - listed)
        listed |= ran
        order += new
        pages = {a // 4096 for a in addresses}
        print(f"{path}: {len(ran)} functions ran ({len(new)} not in an earlier group), "
              f"on {len(pages)} pages of 4 KiB in {len({p // 16 for p in pages})} windows of 64 KiB")
    with open(out, "w") as f:
        f.write("\n".join(order) + "\n")
    print(f"{out}: {len(order)} functions")


if __name__ == "__main__":
    main()
