#!/usr/bin/env python3
"""Import circles between the top-level modules of each crate.

    scripts/import_cycles.py crates/model/src crates/data/src crates/train/src

A module's dependencies are the `crate::NAME` paths in its files (comments and `#[cfg(test)]`
sections left out: tests may reach anywhere). Prints every strongly connected group of modules
and exits 1 if there is one; exits 0 when modules depend one way only.
"""
import os
import re
import sys


def module_edges(root):
    """{module: {modules it uses}} for the top-level modules under `root` (a crate's src/)."""
    tops = {n[:-3] if n.endswith(".rs") else n for n in os.listdir(root)} - {"lib", "main"}
    edges = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
            if rel[0] in ("lib", "main") or "tests" in rel[-1] or rel[-1] == "tests":
                continue
            src = open(os.path.join(dirpath, f), encoding="utf-8").read()
            src = re.split(r"#\[cfg\(test\)\]", src)[0]
            src = "\n".join(l for l in src.splitlines() if not l.strip().startswith("//"))
            for m in re.finditer(r"crate::(\w+)", src):
                if m.group(1) in tops and m.group(1) != rel[0]:
                    edges.setdefault(rel[0], set()).add(m.group(1))
    return edges


def circles(edges):
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    bad = False
    for root in sys.argv[1:] or ["crates/model/src", "crates/data/src", "crates/train/src"]:
        found = circles(module_edges(root))
        for group in found:
            print(f"{root}: import circle between modules {', '.join(group)}")
        bad |= bool(found)
    if not bad:
        print("no import circles")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
