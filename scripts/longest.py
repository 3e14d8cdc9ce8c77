#!/usr/bin/env python3
"""scripts/longest.py — the longest files and functions under src/.

Prints the ten longest files and the ten longest functions (in lines, from
the line that names the function to its closing brace), and exits 1 when a
file passes --max-file lines or a function passes --max-function lines, so
`make check` holds the limits docs/internals/architecture.md states.

Functions are found the way the house style writes them (clang-format,
.clang-format): a definition starts at column 0 and its body ends with a `}`
alone at column 0.
"""
import argparse
import os
import re
import sys

START = re.compile(r"^[A-Za-z_][^;]*\(")
NOT_A_DEFINITION = re.compile(r"^(typedef|struct\s+\w+\s*\{|enum|union|#|extern\s+\"C\")")


def functions(path):
    """Yields (name, first line, length) for each function defined in path."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if START.match(line) and not NOT_A_DEFINITION.match(line):
            # the signature may run over several lines; the body opens with
            # `{` at column 0 (or at the end of the signature's last line)
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith(("{", ";")) and lines[j] != "{":
                j += 1
            if j < len(lines) and lines[j].rstrip().endswith(";"):
                i = j + 1
                continue
            if j + 1 < len(lines) and lines[j + 1] == "{":
                j += 1
            k = j + 1
            while k < len(lines) and lines[k] != "}" and not lines[k].startswith("};"):
                k += 1
            m = re.match(r"^.*?\b(\w+)\s*\(", line)
            name = m.group(1) if m else line.strip()
            yield name, i + 1, k - i + 1
            i = k + 1
            continue
        i += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", "src"))
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--max-file", type=int, default=0, help="fail when a file is longer")
    ap.add_argument("--max-function", type=int, default=0, help="fail when a function is longer")
    args = ap.parse_args()
    root = os.path.normpath(args.root)
    files, funcs = [], []
    for d, _, names in os.walk(root):
        for n in names:
            if not n.endswith((".c", ".h")):
                continue
            p = os.path.join(d, n)
            rel = os.path.relpath(p, os.path.dirname(root))
            with open(p, encoding="utf-8") as f:
                files.append((sum(1 for _ in f), rel))
            if n.endswith(".c"):
                funcs.extend((length, f"{rel}:{first}", name) for name, first, length in functions(p))
    files.sort(reverse=True)
    funcs.sort(reverse=True)
    print(f"longest files ({len(files)} in {os.path.basename(root)}/):")
    for n, rel in files[: args.top]:
        print(f"  {n:6d}  {rel}")
    print(f"longest functions ({len(funcs)}):")
    for n, where, name in funcs[: args.top]:
        print(f"  {n:6d}  {name}  ({where})")
    bad = []
    if args.max_file:
        bad += [f"{rel}: {n} lines (limit {args.max_file})" for n, rel in files if n > args.max_file]
    if args.max_function:
        bad += [f"{name} at {w}: {n} lines (limit {args.max_function})"
                for n, w, name in funcs if n > args.max_function]
    for b in bad:
        print("over the limit: " + b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
