#!/usr/bin/env python3
"""tests/k8s/check_runtime_libs.py CONTAINERFILE PSTRAIN

The runtime stage of the container recipe must provide every shared library the pstrain
binary links: each library `ldd` lists must belong to a Debian package that the stage
installs, or that those packages depend on (recursively; the base image's essential
packages count as present). Offline: dpkg's database only. Prints failures or "ok"."""
import os
import re
import subprocess
import sys


def runtime_packages(path):
    text = open(path).read().replace("\\\n", " ")
    stage = text.split("AS runtime", 1)[1]
    m = re.search(r"apt-get install ([^&]*)", stage)
    return [w for w in m.group(1).split() if not w.startswith("-")]


def candidates(lib):
    """The paths dpkg may know LIB by: as listed, resolved, and across the /usr merge."""
    real = os.path.realpath(lib)
    return {lib, real, re.sub(r"^/usr", "", real),
            "/usr" + real if not real.startswith("/usr") else real}


def owners(libs):
    """{path: package} for every candidate path of LIBS that a package owns: one dpkg -S
    for all of them (one a path took most of the manifest test's time)."""
    paths = sorted(set().union(*(candidates(l) for l in libs))) if libs else []
    out = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        if line.startswith("diversion "):
            continue
        pkgs, _, path = line.partition(": ")
        found[path.strip()] = pkgs.split(",")[0].strip()
    return found


def closure(pkgs):
    # One dpkg-query for every installed package's dependencies (one per package took
    # 17 s of the manifest test).
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Pre-Depends}, ${Depends}\n"],
                         capture_output=True, text=True).stdout
    deps = {}
    for line in out.splitlines():
        name, _, rest = line.partition("\t")
        deps.setdefault(name.split(":")[0], []).append(rest)
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for alt in ", ".join(deps.get(p, [])).split(","):
            names = [a.split()[0].split(":")[0] for a in alt.split("|") if a.strip()]
            todo.extend(names)
    return seen


def main(containerfile, pstrain):
    pkgs = runtime_packages(containerfile)
    essential = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Essential}\n"],
                               capture_output=True, text=True).stdout
    have = closure(pkgs + [l.split()[0] for l in essential.splitlines() if l.endswith(" yes")])
    errs, libs = [], []
    for line in subprocess.run(["ldd", pstrain], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        m = re.search(r"=> (/\S+)", line)
        if not m:
            continue
        # A sanitizer build (PSTRAIN_SANITIZE=ON, the test suite's second pass) links the
        # sanitizer runtimes; the container builds a release binary without them.
        if re.search(r"/lib(asan|ubsan|lsan|tsan)\.so", m.group(1)):
            continue
        libs.append(m.group(1))
    found = owners(libs)
    for lib in libs:
        pkg = next((found[p] for p in sorted(candidates(lib)) if p in found), None)
        if pkg is None:
            errs.append(f"{lib}: no Debian package owns it")
        elif pkg.split(":")[0] not in have:
            errs.append(f"{lib} ({pkg}) is not installed by the runtime stage {pkgs}")
    for e in errs:
        print(e)
    print("ok" if not errs else f"{len(errs)} libraries missing")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
