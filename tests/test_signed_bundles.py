"""Signed bundles (issue 19.2): ``fecc compile --sign-key`` writes ``manifest.sig``, an
Ed25519 signature over the exact bytes of ``manifest.json``; ``fecc_runtime.load(...,
trusted_keys=[...])`` and ``fecc score --trusted-key`` refuse what is unsigned, tampered
with or signed by a key they do not trust.  Keys are made here with ``cryptography``."""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import fecc_runtime
from fecc.bundle import dumps_manifest, sha256_file
from fecc.cli import main
from fecc.driver import CompileOptions, compile_bundle
from fecc.errors import UserError
from fecc_runtime import BundleError, BundleSignatureError
from fecc_runtime.signing import signature_bytes
from _models import make_table, train_xgb

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"


def _write_key(path: Path, key) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _write_pub(path: Path, key) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("signed")
    df = make_table(n=300, seed=11)
    train_xgb(df, d / "model.json")
    df.to_parquet(d / "data.parquet")
    key_a, key_b = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    keys = {"a": _write_key(d / "a.pem", key_a), "a_pub": _write_pub(d / "a.pub.pem", key_a),
            "b": _write_key(d / "b.pem", key_b), "b_pub": _write_pub(d / "b.pub.pem", key_b)}
    compile_bundle(d / "model.json", d / "data.parquet", d / "signed", CompileOptions(search="none", sign_key=str(keys["a"])))
    compile_bundle(d / "model.json", d / "data.parquet", d / "plain", CompileOptions(search="none"))
    return d, keys, key_a, key_b


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "b"
    shutil.copytree(src, dst)
    return dst


def _fingerprint(key) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_signed_bundle_layout(setup):
    d, keys, key_a, _ = setup
    sig = json.loads((d / "signed" / "manifest.sig").read_text())
    assert sig["algorithm"] == "ed25519" and sig["file"] == "manifest.json"
    assert sig["key"] == _fingerprint(key_a)
    # a real Ed25519 signature over the manifest's exact bytes
    key_a.public_key().verify(base64.b64decode(sig["signature"]), (d / "signed" / "manifest.json").read_bytes())
    manifest = json.loads((d / "signed" / "manifest.json").read_text())
    assert "manifest.sig" not in manifest["files"]
    assert not (d / "plain" / "manifest.sig").exists()


def test_trusted_key_loads_and_names_the_signer(setup):
    d, keys, key_a, key_b = setup
    b = fecc_runtime.load(d / "signed", trusted_keys=[keys["a_pub"]])
    assert b.signed_by == _fingerprint(key_a)
    # any one of several trusted keys; a str path, PEM bytes or a key object all work
    assert fecc_runtime.load(d / "signed", trusted_keys=[str(keys["b_pub"]), keys["a_pub"].read_bytes()]).signed_by
    assert fecc_runtime.load(d / "signed", trusted_keys=[key_a.public_key()]).signed_by == _fingerprint(key_a)


def test_signed_bundle_loads_without_keys_and_without_cryptography(setup):
    d, *_ = setup
    assert fecc_runtime.load(d / "signed").signed_by is None
    code = ("import sys, fecc_runtime; b = fecc_runtime.load(sys.argv[1]); "
            "print('cryptography' in sys.modules, b.signed_by)")
    proc = subprocess.run([sys.executable, "-c", code, str(d / "signed")], capture_output=True, text=True,
                          cwd=str(RUNTIME))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "None"]


def test_unsigned_bundle_with_keys_configured_is_refused(setup):
    d, keys, *_ = setup
    with pytest.raises(BundleSignatureError, match="is not signed .no manifest.sig. but trusted keys are configured"):
        fecc_runtime.load(d / "plain", trusted_keys=[keys["a_pub"]])
    assert fecc_runtime.load(d / "plain").signed_by is None  # no keys: unsigned bundles still load


def test_tampered_file_is_refused(setup, tmp_path):
    d, keys, *_ = setup
    b = _copy(d / "signed", tmp_path)
    with open(b / "parity" / "expected.npy", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="parity/expected.npy was modified"):
        fecc_runtime.load(b, trusted_keys=[keys["a_pub"]])


def test_tampered_manifest_with_recomputed_hashes_is_refused(setup, tmp_path):
    """Whoever can write the directory can rewrite the manifest: hashes alone pass, the signature does not."""
    d, keys, *_ = setup
    b = _copy(d / "signed", tmp_path)
    (b / "README.md").write_text("served by someone else\n")
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["files"]["README.md"] = sha256_file(b / "README.md")
    manifest["gate"]["reason"] = "trust me"
    (b / "manifest.json").write_text(dumps_manifest(manifest))
    fecc_runtime.load(b)  # the hashes agree: without keys the swap goes unnoticed
    with pytest.raises(BundleSignatureError, match="does not match its manifest.json"):
        fecc_runtime.load(b, trusted_keys=[keys["a_pub"]])


def test_signature_from_another_key(setup, tmp_path):
    d, keys, key_a, key_b = setup
    b = _copy(d / "signed", tmp_path)
    raw = (b / "manifest.json").read_bytes()
    (b / "manifest.sig").write_bytes(signature_bytes(raw, key_b))  # re-signed by b
    with pytest.raises(BundleSignatureError, match=r"signed by key sha256:[0-9a-f]{16}…, which is not one of the 1 "):
        fecc_runtime.load(b, trusted_keys=[keys["a_pub"]])
    assert fecc_runtime.load(b, trusted_keys=[keys["b_pub"]]).signed_by == _fingerprint(key_b)
    # b's signature presented under a's fingerprint
    sig = json.loads((b / "manifest.sig").read_text())
    sig["key"] = _fingerprint(key_a)
    (b / "manifest.sig").write_text(json.dumps(sig))
    with pytest.raises(BundleSignatureError, match="does not match its manifest.json"):
        fecc_runtime.load(b, trusted_keys=[keys["a_pub"]])


@pytest.mark.parametrize("content, fragment", [
    ("not json", "is not a fecc signature file"),
    ('{"algorithm": "ed25519", "key": "sha256:00"}', "needs 'algorithm', 'key' and 'signature'"),
    ('{"algorithm": "rsa", "key": "x", "signature": "x"}', "verifies ed25519 only"),
])
def test_malformed_signature_file(setup, tmp_path, content, fragment):
    d, keys, *_ = setup
    b = _copy(d / "signed", tmp_path)
    (b / "manifest.sig").write_text(content)
    with pytest.raises(BundleSignatureError, match=fragment):
        fecc_runtime.load(b, trusted_keys=[keys["a_pub"]])


def test_bad_base64_signature(setup, tmp_path):
    d, keys, *_ = setup
    b = _copy(d / "signed", tmp_path)
    sig = json.loads((b / "manifest.sig").read_text())
    sig["signature"] = "***"
    (b / "manifest.sig").write_text(json.dumps(sig))
    with pytest.raises(BundleSignatureError, match="bad base64"):
        fecc_runtime.load(b, trusted_keys=[keys["a_pub"]])


def test_trusted_key_mistakes(setup, tmp_path):
    d, keys, *_ = setup
    with pytest.raises(BundleSignatureError, match="trusted key file not found"):
        fecc_runtime.load(d / "signed", trusted_keys=[tmp_path / "nope.pem"])
    with pytest.raises(BundleSignatureError, match="is a private key; pass its public half"):
        fecc_runtime.load(d / "signed", trusted_keys=[keys["a"]])
    with pytest.raises(BundleSignatureError, match="trusted_keys is empty"):
        fecc_runtime.load(d / "signed", trusted_keys=[])
    r = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(BundleSignatureError, match="not an Ed25519 public key .it is RSA."):
        fecc_runtime.load(d / "signed", trusted_keys=[_write_pub(tmp_path / "rsa.pub.pem", r)])
    (tmp_path / "junk.pem").write_text("hello\n")
    with pytest.raises(BundleSignatureError, match="is not a PEM public key"):
        fecc_runtime.load(d / "signed", trusted_keys=[tmp_path / "junk.pem"])


def test_missing_cryptography_is_one_clear_error(setup, monkeypatch):
    d, keys, *_ = setup
    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    with pytest.raises(BundleSignatureError, match=r"needs the 'cryptography' package: pip install 'fecc-runtime\[sign\]'"):
        fecc_runtime.load(d / "signed", trusted_keys=[keys["a_pub"]])


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bundles_stay_byte_deterministic(setup, tmp_path):
    d, keys, *_ = setup
    compile_bundle(d / "model.json", d / "data.parquet", tmp_path / "plain", CompileOptions(search="none"))
    compile_bundle(d / "model.json", d / "data.parquet", tmp_path / "signed",
                   CompileOptions(search="none", sign_key=str(keys["a"])))
    plain, signed = _tree_bytes(tmp_path / "plain"), _tree_bytes(tmp_path / "signed")
    assert plain == _tree_bytes(d / "plain")     # no key: the same bytes, no manifest.sig
    assert signed == _tree_bytes(d / "signed")   # Ed25519 is deterministic: the same signature too
    assert set(signed) - set(plain) == {"manifest.sig"}
    assert all(signed[k] == plain[k] for k in plain)  # signing changes no other byte


def test_bad_signing_keys_are_user_errors(setup, tmp_path):
    d, keys, *_ = setup
    r = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    enc = tmp_path / "enc.pem"
    enc.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    (tmp_path / "junk.pem").write_text("junk\n")
    cases = [(tmp_path / "nope.pem", "signing key not found"),
             (keys["a_pub"], "is a public key; --sign-key takes the private key"),
             (_write_key(tmp_path / "rsa.pem", r), "is not an Ed25519 key (it is RSA)"),
             (enc, "is encrypted"),
             (tmp_path / "junk.pem", "is not a PEM private key")]
    for path, fragment in cases:
        with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            compile_bundle(d / "model.json", d / "data.parquet", tmp_path / "out",
                           CompileOptions(search="none", sign_key=str(path)))
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_sign_and_score_with_trusted_keys(setup, tmp_path):
    d, keys, *_ = setup
    code, _, err = run("compile", d / "model.json", d / "data.parquet", "-o", tmp_path / "b", "--search", "none",
                       "--sign-key", keys["a"], "-q")
    assert code == 0, err
    assert (tmp_path / "b" / "manifest.sig").is_file()
    code, _, err = run("score", tmp_path / "b", d / "data.parquet", "-o", tmp_path / "s.parquet",
                       "--trusted-key", keys["b_pub"], "--trusted-key", keys["a_pub"])
    assert code == 0, err
    for bundle, key, fragment in [(tmp_path / "b", keys["b_pub"], "which is not one of the 1 trusted key(s)"),
                                  (d / "plain", keys["a_pub"], "is not signed")]:
        code, _, err = run("score", bundle, d / "data.parquet", "-o", tmp_path / "t.parquet", "--trusted-key", key)
        assert code == 2 and err.strip().startswith("fecc: error: ") and fragment in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "t.parquet").exists()
    code, _, err = run("compile", d / "model.json", d / "data.parquet", "-o", tmp_path / "c", "--search", "none",
                       "--sign-key", keys["a_pub"])
    assert code == 2 and "fecc: error: signing key" in err and not (tmp_path / "c").exists()


def test_cli_inspect_shows_the_signature(setup):
    d, keys, key_a, _ = setup
    fp = _fingerprint(key_a)[:23]
    code, out, _ = run("inspect", d / "signed")
    assert code == 0 and f"signed:    key {fp}… (not checked: pass --trusted-key" in out
    code, out, _ = run("inspect", d / "signed", "--trusted-key", keys["a_pub"])
    assert code == 0 and f"signed:    key {fp}… (verified against --trusted-key)" in out
    code, out, _ = run("inspect", d / "plain")
    assert code == 0 and "signed:    no" in out
    code, _, err = run("inspect", d / "plain", "--trusted-key", keys["a_pub"])
    assert code == 2 and err.startswith("fecc: error: bundle ") and "is not signed" in err
