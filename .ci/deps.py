#!/usr/bin/env python3
"""Dependency hygiene, offline: every dependency is used, every enabled
feature is accounted for, and no crate is built twice in two versions unless
.ci/deps.toml allows it.

- Used: a `[dependencies]` crate must be named as `name::` / `use name` /
  `extern crate name` in src/ or build.rs; a dev-dependency in tests/, src/
  (unit tests), benches/ or examples/. (What cargo-machete does, without
  installing it.)
- Features: each feature Cargo.toml enables on a dependency needs an entry in
  .ci/deps.toml, either `uses` (a regex that must match the sources: proof the
  feature's API is called) or `needed_by` (why it is needed when no API names
  it, e.g. a windows-sys type module the WinSock functions' signatures use).
- Duplicates: `cargo tree -d` (normal and build edges, every target) may list
  only the crates in `duplicates.allowed`, each with a reason.
Exit 1 with one line per finding.
"""
import pathlib
import re
import subprocess
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parent.parent
manifest = tomllib.loads((root / "Cargo.toml").read_text())
policy = tomllib.loads((root / ".ci/deps.toml").read_text())


def sources(*dirs):
    text = []
    for d in dirs:
        p = root / d
        files = [p] if p.is_file() else sorted(p.rglob("*.rs")) if p.exists() else []
        text += [f.read_text(errors="replace") for f in files]
    return "\n".join(text)


lib_src = sources("src", "build.rs")
dev_src = lib_src + sources("tests", "benches", "examples")

tables = [("dependencies", manifest.get("dependencies", {}), lib_src),
          ("build-dependencies", manifest.get("build-dependencies", {}), lib_src),
          ("dev-dependencies", manifest.get("dev-dependencies", {}), dev_src)]
for cfg, t in manifest.get("target", {}).items():
    tables.append((f"target.{cfg}.dependencies", t.get("dependencies", {}), lib_src))
    tables.append((f"target.{cfg}.dev-dependencies", t.get("dev-dependencies", {}), dev_src))

findings = []
checked = 0
for table, deps, text in tables:
    for name, spec in deps.items():
        checked += 1
        ident = re.escape((spec.get("package", name) if isinstance(spec, dict) else name).replace("-", "_"))
        if not re.search(rf"\b{ident}::|\buse {ident}\b|\bextern crate {ident}\b", text):
            findings.append(f"[{table}] {name}: never named in the sources (remove it, or use it)")
        features = spec.get("features", []) if isinstance(spec, dict) else []
        for feat in features:
            entry = policy.get("features", {}).get(name, {}).get(feat)
            if entry is None:
                findings.append(f"[{table}] {name} feature \"{feat}\": no entry in .ci/deps.toml "
                                f"(add `uses` = a regex proving it is used, or `needed_by` = why)")
            elif "uses" in entry and not re.search(entry["uses"], text):
                findings.append(f"[{table}] {name} feature \"{feat}\": nothing matches /{entry['uses']}/ "
                                f"in the sources: the feature looks unused (drop it from Cargo.toml)")

tree = subprocess.run(["cargo", "tree", "-d", "--locked", "-e", "normal,build", "--target", "all"],
                      cwd=root, capture_output=True, text=True)
if tree.returncode != 0:
    findings.append(f"cargo tree -d failed: {tree.stderr.strip()[:300]}")
dups = sorted({line.split()[0] for line in tree.stdout.splitlines() if re.match(r"^[A-Za-z0-9_-]+ v", line)})
allowed = policy.get("duplicates", {}).get("allowed", {})
for d in dups:
    if d not in allowed:
        findings.append(f"duplicate crate {d} (two versions in the build, see `cargo tree -d -i {d}`): "
                        f"unify the versions, or allow it in .ci/deps.toml with a reason")

print(f"deps: {checked} dependencies checked, duplicates: {', '.join(dups) or 'none'}")
for f in findings:
    print(f"deps: {f}")
sys.exit(1 if findings else 0)
