"""Build C sources into a shared library with gcc, the same bytes for the same sources.

Used for the trees' library (``trees/{name}.so``, :mod:`fecc.lower.trees`) and the
ensemble library (``ensemble/ensemble.so``, :mod:`fecc.lower.ensemble`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import CompileError

__all__ = ["gcc", "CFLAGS", "LDFLAGS"]

#: gcc flags; fixed so that the same model gives the same library, byte for byte.
#: No -march (the bundle runs on other machines), no -ffast-math (it would break the
#: NaN tests and the float semantics), no -g and -fno-ident (no paths or compiler
#: banner in the binary).
CFLAGS = ("-std=c99", "-O3", "-fPIC", "-fno-ident")
#: Link flags: a shared library, no build-id note (it would hash the same bytes anyway).
LDFLAGS = ("-shared", "-Wl,--build-id=none")
#: The C compiler (a module attribute, so tests can point it at something broken).
CC = "gcc"

def gcc(build: Path, sources: list[str], output: str, cflags: tuple[str, ...] = CFLAGS) -> str:
    """Compile ``sources`` (relative to ``build``) into ``output`` with ``cflags``; return gcc's version.

    Each source becomes an object file (in parallel, one gcc per CPU), then they are
    linked in the given order.  Relative paths, a scratch cwd and a fixed locale keep
    paths and messages out of the binary and the build reproducible.
    """
    cc = shutil.which(CC)
    if cc is None:
        raise CompileError(f"{CC!r} not found on PATH; fecc needs gcc to build tree libraries")
    env = {**os.environ, "LC_ALL": "C", "SOURCE_DATE_EPOCH": "0"}

    def run(cmd: list[str]) -> None:
        proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
            raise CompileError(f"gcc failed ({' '.join(cmd)}):\n{tail}")

    objects = [src[:-2] + ".o" for src in sources]
    jobs = [[cc, *cflags, "-c", src, "-o", obj] for src, obj in zip(sources, objects)]
    n_jobs = max(1, min(len(jobs), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        for fut in [pool.submit(run, cmd) for cmd in jobs]:
            fut.result()
    run([cc, *LDFLAGS, "-o", output, *objects, "-lm"])
    ver = subprocess.run([cc, "-dumpfullversion"], capture_output=True, text=True, env=env)
    return ver.stdout.strip()
