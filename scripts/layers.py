#!/usr/bin/env python3
"""scripts/layers.py — checks src/'s #include edges against the layer table.

The table lives in docs/internals/architecture.md between the markers
`<!-- layers: begin -->` and `<!-- layers: end -->`, one line a module:

    module -> allowed modules...

A module is a directory under src/ (or a file directly in src/, named with
its extension, such as main.c). Every `#include "dir/file.h"` in a module's
files must name the module itself or one the table allows; an include of a
header that does not exist, a module missing from the table or a table entry
naming an unknown module are errors too. Exits 1 and lists every bad edge.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def read_table(doc):
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- layers: begin -->(.*?)<!-- layers: end -->", text, re.S)
    if not m:
        sys.exit(f"{doc}: no layer table between the layers markers")
    table = {}
    for line in m.group(1).splitlines():
        line = line.strip()
        if not line or line.startswith("```"):
            continue
        if "->" not in line:
            sys.exit(f"{doc}: not a layer line: {line!r}")
        name, deps = line.split("->", 1)
        table[name.strip()] = set(deps.split())
    return table


def module_of(rel):
    """src/http/server.c -> http; src/main.c -> main.c"""
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 else parts[1]


def main():
    src = os.path.join(ROOT, "src")
    table = read_table(os.path.join(ROOT, "docs", "internals", "architecture.md"))
    modules = {n for n in os.listdir(src) if os.path.isdir(os.path.join(src, n))}
    modules |= {n for n in os.listdir(src) if n.endswith(".c")}
    errors = []
    for name, deps in table.items():
        for d in deps | {name}:
            if d not in modules:
                errors.append(f"layer table: {name} -> {d}: no such module in src/")
    for m in sorted(modules - set(table)):
        errors.append(f"layer table: module {m} is missing")
    edges = 0
    for d, _, names in os.walk(src):
        for n in sorted(names):
            if not n.endswith((".c", ".h")):
                continue
            path = os.path.join(d, n)
            rel = os.path.relpath(path, ROOT)
            mod = module_of(rel)
            with open(path, encoding="utf-8") as f:
                for no, line in enumerate(f, 1):
                    inc = INCLUDE.match(line)
                    if not inc:
                        continue
                    target = inc.group(1)
                    if "/" not in target:  # a generated or local header
                        continue
                    edges += 1
                    if not os.path.exists(os.path.join(src, target)):
                        errors.append(f"{rel}:{no}: includes {target}, which is not in src/")
                        continue
                    dep = target.split("/")[0]
                    if dep != mod and dep not in table.get(mod, set()):
                        errors.append(f"{rel}:{no}: {mod} may not include {target} "
                                      f"(docs/internals/architecture.md allows {mod} -> "
                                      f"{' '.join(sorted(table.get(mod, []))) or 'nothing'})")
    for e in errors:
        print(e, file=sys.stderr)
    print(f"{edges} include edges in src/, {len(errors)} not allowed by the layer table")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
