"""``fecc inspect``: verify a bundle and say what it contains, in a few lines."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .errors import UserError


def inspect(bundle: str | Path, *, trusted_keys: Sequence[str | Path] | None = None) -> str:
    """Load ``bundle`` through the runtime (hashes, signature, parity replay) and describe it.

    Parameters
    ----------
    bundle : the bundle directory.
    trusted_keys : Ed25519 public keys (PEM paths); when given, the bundle must be signed by one.

    Returns
    -------
    str
        Lines: the bundle, its signature, objective, legacy model, gate decision, proposer,
        one line per transform (``tf_1 = <math>``), the transform search's counts and its selection
        against NSR alone (``transform selection: transforms|nsr-alone — <reason>``), the base
        margin the experts repair (``base: margin = shift + scale × legacy margin``), one line
        per expert (``if <region>: margin += <correction>``) and what was verified.

    Raises
    ------
    UserError
        The bundle does not load (the runtime's reason, one line).
    """
    import fecc_runtime

    try:
        b = fecc_runtime.load(bundle, trusted_keys=list(trusted_keys) if trusted_keys else None)
    except fecc_runtime.BundleError as exc:
        raise UserError(str(exc)) from None
    m = b.manifest
    lines = [f"{b!r}",
             f"  signed:    {_signature_line(b)}",
             f"  objective: {m['task']['objective']} (link {m['task']['link']})",
             f"  legacy:    {m['inputs']['model']['file']} sha256 {m['inputs']['model']['sha256'][:16]}…",
             f"  gate:      {m['gate']['decision']} — {m['gate'].get('reason', '')}"]
    search = m.get("search") or {}
    if search.get("proposer"):
        p = search["proposer"]
        used = p.get("usage") or {}
        counts = (f" ({used['calls']} LLM calls, {used.get('accepted', 0)}/{used.get('proposals', 0)} "
                  "proposals usable)") if "calls" in used else ""
        lines.append(f"  proposer:  {p['name']}{counts}")
    for t in m.get("transforms") or []:
        lines.append(f"  {t['name']} = {t['math']}  (transform, postfix {t['postfix']})")
    st = search.get("transforms")
    if st:
        lines.append(f"  transform search: {st.get('decoder')} decoder (λ = {st.get('lambda')}), "
                     f"{st.get('generated')} generated, {st.get('invalid')} invalid, {st.get('evaluated')} evaluated, "
                     f"{st.get('ranked_out')} ranked out, {len(m.get('transforms') or [])} shipped")
        sel = st.get("selection")
        if isinstance(sel, dict):
            lines.append(f"  transform selection: {sel.get('decision')} — {sel.get('reason', '')}")
    bm = (m.get("aggregator") or {}).get("base_map") if m.get("experts") else None
    if isinstance(bm, dict):
        lines.append(f"  base:      margin = {bm.get('shift')} + {bm.get('scale')} × legacy margin "
                     "(an increasing map: the legacy ranking unchanged), then the experts")
    for e in m.get("experts", []):
        region = (e.get("region") or {}).get("rule", "?")
        correction = (e.get("correction") or {}).get("math", "")
        lines.append(f"  {e['name']}: if {region}: margin += {correction}")
    lines.append(f"  verified:  {len(m['files'])} files, {m['parity']['rows']} parity rows")
    return "\n".join(lines)


def _signature_line(bundle) -> str:
    from fecc_runtime.errors import BundleSignatureError
    from fecc_runtime.signing import read_signature

    if bundle.signed_by:
        return f"key {bundle.signed_by[:23]}… (verified against --trusted-key)"
    try:
        sig = read_signature(bundle.path)
    except BundleSignatureError as exc:
        return f"unreadable manifest.sig ({exc})"
    if sig is None:
        return "no"
    return f"key {sig['key'][:23]}… (not checked: pass --trusted-key to require it)"
