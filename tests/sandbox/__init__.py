"""Run untrusted Python (LLM-written candidates) in a locked-down subprocess.

Not part of the product, and not in the wheel: fecc never runs LLM code — answers are
parsed into IR by an AST whitelist (:mod:`fecc.llm.answer`) and only the IR is lowered.
The hostile-input tests (``tests/test_sandbox.py``) use this to show what executing a
candidate would take, should a future stage need to (e.g. to turn a candidate the
whitelist rejects into runtime feedback).  Layers, outermost first:

* a separate process in its own process group, killed (the whole group) on timeout;
* no network: a fresh network namespace (``unshare --net``) when the kernel allows it;
  always an environment without proxies, keys or ``PYTHON*`` variables (``-I``);
* rlimits set by the child before anything untrusted runs, hard = soft: address space,
  CPU seconds, open files, file size (stdout goes to a file, so a print bomb hits it);
* root dropped to ``nobody`` when started as root;
* an audit hook refusing ``open``, processes, sockets, new imports and any further
  ``compile``/``exec``; builtins reduced to arithmetic helpers.

Each layer alone has known escapes (audit hooks can be dodged from C, namespaces may be
unavailable); together with the timeout and rlimits they bound what a candidate can do.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

_CHILD = Path(__file__).with_name("_child.py")
_MARKER = "\x00FECC-SANDBOX-RESULT\x00"

__all__ = ["SandboxLimits", "SandboxResult", "run_python", "network_isolation"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource caps of one sandboxed run."""

    timeout: float = 5.0          # wall-clock seconds before the process group is killed
    cpu_seconds: int = 5          # RLIMIT_CPU
    memory_mb: int = 768          # RLIMIT_AS (numpy alone maps ~300 MB of address space)
    file_bytes: int = 1 << 20     # RLIMIT_FSIZE: caps what the child can write to its stdout file
    open_files: int = 32          # RLIMIT_NOFILE


@dataclass(frozen=True)
class SandboxResult:
    """What happened: ``status`` is ``ok``, ``error``, ``memory``, ``timeout`` or ``killed``."""

    status: str
    values: list = field(default_factory=list)
    error: str | None = None
    stdout: str = ""
    seconds: float = 0.0
    returncode: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@lru_cache(maxsize=1)
def network_isolation() -> list[str]:
    """The command prefix that gives the child no network, or ``[]`` when unavailable here."""
    exe = shutil.which("unshare")
    if exe is None:
        return []
    for prefix in ([exe, "--net"], [exe, "--net", "--map-root-user"]):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=5).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            pass
    return []


def _clean_env() -> dict[str, str]:
    # nothing inherited: no proxies, no API keys, no PYTHONPATH; one BLAS thread
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}


def run_python(
    code: str,
    *,
    entry: str = "f",
    calls: list[list] | tuple = (),
    limits: SandboxLimits = SandboxLimits(),
    numpy: bool = True,
    isolate_network: bool = True,
) -> SandboxResult:
    """Define ``code`` in a sandboxed child and call ``entry(*args)`` for each of ``calls``.

    Parameters
    ----------
    code : untrusted Python source that defines ``entry``.
    entry : the function to call.
    calls : argument lists (JSON-serialisable), one call each; results come back as floats
        (or their ``repr`` when not numbers).
    limits : resource caps.
    numpy : make ``np``/``numpy`` available to the code (``math`` always is).
    isolate_network : run in a fresh network namespace when possible.

    Returns
    -------
    SandboxResult
        Never raises for anything the code does; only for a broken installation.
    """
    job = json.dumps({"code": code, "entry": entry, "calls": [list(c) for c in calls], "numpy": numpy,
                      "limits": {"memory_mb": limits.memory_mb, "cpu_seconds": limits.cpu_seconds,
                                 "file_bytes": limits.file_bytes, "open_files": limits.open_files}})
    prefix = network_isolation() if isolate_network else []
    cmd = [*prefix, sys.executable, "-I", str(_CHILD)]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fecc-sandbox-") as work:
        os.chmod(work, 0o755)
        out_path = Path(work) / "stdout"
        with open(out_path, "w+b") as out, tempfile.TemporaryFile() as stdin:
            stdin.write(job.encode("utf-8"))
            stdin.seek(0)
            proc = subprocess.Popen(cmd, stdin=stdin, stdout=out, stderr=subprocess.DEVNULL, cwd=work,
                                    env=_clean_env(), start_new_session=True, close_fds=True)
            try:
                rc = proc.wait(timeout=limits.timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                rc = proc.wait()
            _kill_group(proc)  # a child that forked before exiting leaves nothing behind
            out.seek(0)
            raw = out.read(limits.file_bytes + 4096).decode("utf-8", "replace")
    seconds = time.perf_counter() - start
    if timed_out:
        return SandboxResult("timeout", error=f"killed after {limits.timeout:g} s (time limit)",
                             seconds=seconds, returncode=rc)
    marker = raw.rfind(_MARKER)
    if marker < 0:
        why = {-signal.SIGXCPU: "CPU time limit", -signal.SIGKILL: "killed", -signal.SIGXFSZ: "output size limit",
               -signal.SIGSEGV: "crashed"}.get(rc, f"exit status {rc}")
        status = "timeout" if rc == -signal.SIGXCPU else "killed"
        return SandboxResult(status, error=f"the candidate died without a result ({why})", seconds=seconds,
                             returncode=rc)
    try:
        result = json.loads(raw[marker + len(_MARKER):].splitlines()[0])
    except (ValueError, IndexError):
        return SandboxResult("killed", error="the candidate's result was cut off", seconds=seconds, returncode=rc)
    return SandboxResult(result["status"], values=result.get("values", []), error=result.get("error"),
                         stdout=result.get("stdout", ""), seconds=seconds, returncode=rc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
