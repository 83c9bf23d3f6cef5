"""Compile-only bundles of the model zoo are pinned byte for byte (tests/data/pinned_bundles.json).

A refactor of the compiler must not change what users get: for every zoo model of
``tests/_zoo.py`` (``CHOSEN``, the C target, plus a few ONNX tree and one-graph ONNX
bundles) the sha256 of every bundle file equals the value recorded before the
refactor, and so do the bits of the bundle's scores on the fixture's rows.

What is machine-dependent is pinned through what it is built from, not its bytes:

* ``*.so`` (gcc's output depends on the gcc release and the machine): not hashed; their
  C sources are, and so are the bundle's scores (``predict`` and ``output="margin"``
  on the fixture rows, as float64 bytes), which the libraries compute.
* the *predictions* of a logistic or softmax link go through numpy's ``exp``, whose last
  bit depends on the CPU (its AVX-512 and AVX2 paths round differently: the same bundle
  scored on an AMD EPYC and on an Intel Xeon differs in the 16th digit): the bundle's
  margins are pinned bit for bit, and its predictions must equal the link of those
  margins (:func:`fingerprint`); ``parity/expected.npy`` (predictions, computed at compile
  time) is not hashed — the runtime's parity replay checks it against the bundle's output
  on every load.
* ``manifest.json`` lists the ``.so`` and ``parity/expected.npy`` hashes, the gcc version
  and the platform, and ``README.md`` / ``report.*`` name the platform: those fields are
  blanked before hashing (:func:`normalized`); everything else in them is pinned.

The pins were recorded from the code before the forest IR refactor (issue 16).  When a
change is *meant* to alter bundles (a new format version, new library versions in the
venv), re-record and say why in the commit::

    .venv/bin/python tests/test_bundle_pinned.py --record
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _zoo import CHOSEN, VARIANT_MODELS, entry_for, zoo_bundle, zoo_table  # noqa: E402

PINS = Path(__file__).parent / "data" / "pinned_bundles.json"
CASES = [(e["path"], "c") for e in CHOSEN] + [(p, v) for v, paths in VARIANT_MODELS.items() for p in paths]
#: Placeholders for machine-dependent text.
_PLATFORM = f"{platform.system()} {platform.machine()}"


def _gcc_version() -> str:
    try:
        return subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def _blank_machine(obj):
    """The manifest without the fields that name the machine (gcc version, platform, ``.so`` hashes)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "platform":
                v = "<platform>"
            elif k == "compiler" and isinstance(v, dict) and v.get("cc") == "gcc":
                v = dict(v, version="<gcc>")
            elif k == "files" and isinstance(v, dict):
                v = {f: ("<machine code>" if f.endswith(".so") else "<machine exp>" if f in _MACHINE_FILES else h)
                     for f, h in v.items()}
            out[k] = _blank_machine(v)
        return out
    if isinstance(obj, list):
        return [_blank_machine(v) for v in obj]
    return obj


#: Bundle files whose bytes depend on the CPU's ``exp`` (predictions after the link).
_MACHINE_FILES = ("parity/expected.npy",)


def normalized(rel: str, data: bytes) -> bytes | None:
    """The bytes pinned for bundle file ``rel``: ``None`` for machine code and CPU-dependent
    predictions, machine fields blanked."""
    if rel.endswith(".so") or rel in _MACHINE_FILES:
        return None
    if rel == "manifest.json":
        return json.dumps(_blank_machine(json.loads(data)), sort_keys=True).encode()
    if rel.endswith((".md", ".html", ".txt", ".json")):
        text = data.decode("utf-8").replace(_PLATFORM, "<platform>")
        gcc = _gcc_version()
        return (text.replace(gcc, "<gcc>") if gcc else text).encode()
    return data


def fingerprint(bundle: Path, entry: dict) -> dict:
    """sha256 per bundle file (normalized) and of the bundle's scores on the fixture rows."""
    import fecc_runtime

    files = {}
    for p in sorted(bundle.rglob("*")):
        if p.is_file():
            rel = p.relative_to(bundle).as_posix()
            data = normalized(rel, p.read_bytes())
            if data is not None:
                files[rel] = hashlib.sha256(data).hexdigest()
    b = fecc_runtime.load(bundle)
    df = zoo_table(entry)
    margin = np.ascontiguousarray(b.predict(df, output="margin"), dtype=np.float64)
    prediction = np.asarray(b.predict(df), dtype=np.float64)
    # the predictions are the link of the pinned margins (to the CPU's last bit of exp)
    np.testing.assert_allclose(prediction, fecc_runtime.apply_link(margin, b.link), rtol=1e-14, atol=0)
    return {"files": files, "scores": {"margin": hashlib.sha256(margin.tobytes()).hexdigest()}}


def _key(path: str, variant: str) -> str:
    return path if variant == "c" else f"{path}@{variant}"


@pytest.mark.parametrize("path,variant", CASES, ids=[_key(*c) for c in CASES])
def test_bundle_bytes_are_pinned(path, variant, tmp_path_factory):
    pins = json.loads(PINS.read_text())["bundles"]
    want = pins[_key(path, variant)]
    entry = entry_for(path)
    got = fingerprint(zoo_bundle(entry, tmp_path_factory.getbasetemp() / "zoo", variant), entry)
    changed = sorted(f for f in set(want["files"]) | set(got["files"])
                     if want["files"].get(f) != got["files"].get(f))
    assert not changed, f"bundle files differ from the pins: {changed}"
    assert got["scores"] == want["scores"]


def _record() -> None:
    """Compile every case and write tests/data/pinned_bundles.json."""
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory(prefix="fecc-pins-") as tmp:
        for path, variant in CASES:
            entry = entry_for(path)
            out[_key(path, variant)] = fingerprint(zoo_bundle(entry, Path(tmp), variant), entry)
            print(_key(path, variant), file=sys.stderr)
    doc = {"about": "sha256 of compile-only zoo bundles; see tests/test_bundle_pinned.py", "bundles": out}
    PINS.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_bundle_pinned.py --record")
    _record()
