"""The sandbox child: limits itself, then runs one untrusted function on a few inputs.

Run only by :func:`sandbox.run_python` (tests/sandbox) as ``python -I _child.py`` with a JSON job on
stdin.  Order matters: rlimits first (they hold for everything after, and hard = soft so
the code cannot raise them), then the imports the candidate may use, then dropping root,
then an audit hook that refuses files, processes, sockets, new imports and further
compile/exec, and only then the untrusted code.  The result is one marker line on the
real stdout; whatever the candidate prints is captured and returned truncated.
"""
import builtins
import io
import json
import math
import os
import resource
import sys
import traceback

MARKER = "\x00FECC-SANDBOX-RESULT\x00"


def _limit(job):
    lim = job["limits"]
    mb = 1024 * 1024
    for res, value in ((resource.RLIMIT_AS, lim["memory_mb"] * mb), (resource.RLIMIT_CPU, lim["cpu_seconds"]),
                       (resource.RLIMIT_FSIZE, lim["file_bytes"]), (resource.RLIMIT_NOFILE, lim["open_files"]),
                       (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


def _drop_root():
    if os.geteuid() != 0:
        return
    try:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)  # nobody
    except OSError:
        pass  # inside a user namespace without a mapping for nobody: the namespace is the boundary


_BLOCKED_PREFIXES = ("os.", "subprocess.", "socket.", "shutil.", "ctypes.", "winreg.", "urllib.", "http.",
                     "ftplib.", "smtplib.", "telnetlib.", "webbrowser.", "pty.", "fcntl.", "mmap.", "syslog.")


def _install_hook(state):
    def hook(event, args):
        if event in ("exec", "compile"):
            if state["exec_left"] > 0 and event == "exec":
                state["exec_left"] -= 1
                return
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import":
            name = args[0]
            if name in sys.modules:
                return
            raise PermissionError(f"sandbox: importing {name} is not allowed")
        if event == "open" or event.startswith(_BLOCKED_PREFIXES) or event in (
                "builtins.input", "sys.settrace", "sys.setprofile", "code.__new__", "function.__new__"):
            raise PermissionError(f"sandbox: {event} is not allowed")

    sys.addaudithook(hook)


def main():
    job = json.loads(sys.stdin.read())
    real_stdout = sys.stdout
    _limit(job)
    namespace_modules = {"math": math}
    if job.get("numpy"):
        import numpy
        namespace_modules["np"] = namespace_modules["numpy"] = numpy
    _drop_root()
    result = {"status": "ok", "values": [], "error": None}
    captured = io.StringIO()
    try:
        code = compile(job["code"], "<candidate>", "exec")
        safe_builtins = {n: getattr(builtins, n) for n in ("abs", "min", "max", "float", "int", "round", "pow", "len", "range", "sum",
                                   "bool", "True", "False", "None", "print", "isinstance", "ValueError",
                                   "ZeroDivisionError", "Exception")}

        def restricted_import(name, globals=None, locals=None, fromlist=(), level=0):
            if name in namespace_modules:
                return namespace_modules[name]
            raise ImportError(f"sandbox: import of {name} is not allowed")

        safe_builtins["__import__"] = restricted_import
        namespace = {"__builtins__": safe_builtins, **namespace_modules}
        state = {"exec_left": 1}
        _install_hook(state)
        sys.stdout = captured
        exec(code, namespace)
        fn = namespace.get(job["entry"])
        if not callable(fn):
            raise NameError(f"the code defines no function {job['entry']!r}")
        for args in job["calls"]:
            value = fn(*args)
            try:
                result["values"].append(float(value))
            except (TypeError, ValueError):
                result["values"].append(repr(value)[:200])
    except MemoryError:
        result = {"status": "memory", "values": [], "error": "MemoryError: the candidate needs too much memory"}
    except BaseException as exc:  # noqa: BLE001 - every failure is a result for the parent
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        # only the frames of the candidate are useful feedback
        lines = [l for l in "".join(tb).splitlines() if "_child.py" not in l]
        result = {"status": "error", "values": [], "error": "\n".join(lines[-8:])[:2000]}
    finally:
        sys.stdout = real_stdout
    result["stdout"] = captured.getvalue()[:2000]
    real_stdout.write(MARKER + json.dumps(result) + "\n")
    real_stdout.flush()


if __name__ == "__main__":
    main()
