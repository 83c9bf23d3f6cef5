"""The layout of an LLM answer: where the function and the JSON search space are.

An answer is ``def f(x, params): ...`` followed by a JSON object, with or without
Markdown fences and with prose tolerated around them (:func:`split_answer`).  Every
problem in an answer is an :class:`AnswerError` whose message locates it, written so
that it can be fed back to the LLM.
"""
from __future__ import annotations

import re

#: Longest answer we hand to :func:`ast.parse` (a cheap guard against pathological input).
MAX_SOURCE_CHARS = 20_000
#: Why an import is refused (before the function, or inside it).
IMPORT_NOT_ALLOWED = "imports are not allowed (the functions need no import)"


class AnswerError(ValueError):
    """An answer we cannot accept; the message locates the problem for the LLM.

    Attributes
    ----------
    reason : the problem in words.
    line, col : 1-based position in the answer text, when known.
    """

    def __init__(self, reason: str, *, line: int | None = None, col: int | None = None):
        self.reason = reason
        self.line = line
        self.col = col
        where = f"line {line}, col {col}: " if line is not None and col is not None else (
            f"line {line}: " if line is not None else "")
        super().__init__(where + reason)


_FENCE = re.compile(r"^```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def split_answer(text: str) -> tuple[str, int, str, int]:
    """Cut an answer into ``(code, code_line, space_json, space_line)``.

    ``code_line``/``space_line`` are the 0-based line offsets of each part in ``text``,
    so errors can point at the line the LLM wrote.  Markdown fences are tolerated; the
    grammar-constrained form is the function followed by the JSON object on its own line.
    """
    if not isinstance(text, str):
        raise AnswerError(f"the answer must be text, got {type(text).__name__}")
    if len(text) > MAX_SOURCE_CHARS:
        raise AnswerError(f"the answer is {len(text)} characters long; the limit is {MAX_SOURCE_CHARS}")
    blocks = [(m.group(1).lower(), m.group(2), text.count("\n", 0, m.start(2))) for m in _FENCE.finditer(text)]
    code = next((b for b in blocks if re.search(r"^\s*def\s", b[1], re.M)), None)
    if code is not None and re.search(r"^\{", code[1], re.M):
        # one fenced block holding both the function and the JSON: split inside it
        inner_code, inner_line, inner_space, space_line = _split_plain(code[1])
        return inner_code, code[2] + inner_line, inner_space, code[2] + space_line
    if code is not None:
        rest = [b for b in blocks if b is not code and b[1].lstrip().startswith("{")]
        if rest:
            return code[1], code[2], rest[0][1], rest[0][2]
        # the JSON may follow the code block unfenced
        tail_start = text.find("```", text.find(code[1]) + len(code[1]))
        tail = text[tail_start + 3:] if tail_start >= 0 else ""
        brace = tail.find("{")
        if brace < 0:
            raise AnswerError("no JSON search space found after the function")
        pos = tail_start + 3 + brace
        return code[1], code[2], text[pos:], text.count("\n", 0, pos)
    return _split_plain(text)


def _split_plain(text: str) -> tuple[str, int, str, int]:
    """:func:`split_answer` for text without fences: the function, then the JSON."""
    m = re.search(r"^[ \t]*def[ \t]", text, re.M)
    if m is None:
        raise AnswerError("no function found: the answer must start with `def f(x, params):`")
    start = m.start()
    # prose before the function is tolerated, Python statements are not: an import the
    # model put above `def` would otherwise slip past the whitelist unseen
    for i, line in enumerate(text[:start].split("\n")):
        if re.match(r"^\s*(import\s|from\s+\S+\s+import\s|@)", line):
            raise AnswerError(IMPORT_NOT_ALLOWED if not line.lstrip().startswith("@")
                              else "decorators are not allowed", line=i + 1, col=1)
    # the function ends at the first non-blank line that starts in column 0 after the def line
    lines = text[start:].split("\n")
    end_line = len(lines)
    for i, line in enumerate(lines[1:], 1):
        if line.strip() and not line[0].isspace() and not line.startswith("#"):
            end_line = i
            break
    code = "\n".join(lines[:end_line])
    code_line = text.count("\n", 0, start)
    rest = "\n".join(lines[end_line:])
    brace = rest.find("{")
    if brace < 0:
        raise AnswerError("no JSON search space found after the function", line=code_line + end_line + 1)
    pos = start + len(code) + 1 + brace
    # prose between the function and the JSON is tolerated; more Python is not (it
    # would otherwise be silently ignored)
    for i, line in enumerate(rest[:brace].split("\n")):
        if re.match(r"^\s*(def|class|import|from|return|if|for|while|with|try|@)\b", line):
            raise AnswerError("define exactly one function, `f`, and nothing else before the JSON search space",
                              line=code_line + end_line + i + 1, col=1)
    return code, code_line, text[pos:], text.count("\n", 0, pos)
