#!/usr/bin/env python3
"""Keeps only the allocation counts in Thresholds/*.p90.json, under the names `benchmark thresholds check` reads.

`swift package --allow-writing-to-package-directory benchmark thresholds update` writes every metric (times
included) to files whose names have spaces replaced by underscores; `thresholds check` of ordo-one/benchmark
1.38 looks the files up by the benchmark's own name, and times on a shared machine are not stable enough to
assert. So: allocation counts only, one file per benchmark, named as the check expects.
"""
import glob
import json
import os
import re
import subprocess

here = os.path.dirname(os.path.abspath(__file__))
names = set()
for source in glob.glob(os.path.join(here, "Benchmarks", "*", "*.swift")):
    target = os.path.basename(os.path.dirname(source))
    text = open(source).read()
    for name in re.findall(r'Benchmark\(\s*"((?:[^"\\]|\\.)*)"', text):
        names.add((target, name))
    for name in re.findall(r'Benchmark\(\s*\n\s*"((?:[^"\\]|\\.)*)"', text):
        names.add((target, name))
    # A name chosen by an expression (`configuration ? "a" : "b"`): any string literal may be one; only those that
    # name a thresholds file count.
    for name in re.findall(r'"((?:[^"\\]|\\.)*)"', text):
        names.add((target, name))

def real_name(template, stem):
    """The benchmark's name if `stem` (a file name, spaces maybe written as underscores) is `template`, whose
    `\\(...)` interpolations (e.g. `batches of \\(batch)`) stand for any text; else None."""
    parts = re.split(r"\\\([^)]*\)", template)
    pattern = "(.*?)".join("".join("[ _]" if c == " " else re.escape(c) for c in part) for part in parts)
    found = re.fullmatch(pattern, stem)
    if found is None:
        return None
    name = parts[0]
    for value, part in zip(found.groups(), parts[1:]):
        name += value.replace("_", " ") + part
    return name


for path in glob.glob(os.path.join(here, "Thresholds", "*.p90.json")):
    data = json.load(open(path))
    os.remove(path)
    if "mallocCountTotal" not in data:
        continue
    stem = os.path.basename(path)[: -len(".p90.json")]
    match = next((f"{t}.{n}" for t, n in names if real_name(f"{t}.{n}", stem)), None)
    match = match and real_name(match, stem)
    if match is None:
        print(f"no benchmark named like {stem}; dropped")
        continue
    out = os.path.join(here, "Thresholds", f"{match}.p90.json")
    with open(out, "w") as f:
        json.dump({"mallocCountTotal": data["mallocCountTotal"]}, f, indent=2)
        f.write("\n")
    print(f"kept {out}: mallocCountTotal {data['mallocCountTotal']}")
