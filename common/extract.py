"""Python code out of chat answers (prose + fenced blocks).

``from_chat(answer, entry_point)``
    Fenced blocks (```python, ```py, bare ```); an unclosed last fence (an answer cut by the
    token limit) runs to the end. The chosen block is the first that parses and defines
    ``entry_point``, else the first that parses and defines any function, else the first that
    parses (else the first block, so that the harness reports its syntax error). With no fence at all,
    the longest run of lines that parses as Python and defines a function. Top-level example
    statements (``print(f(3))``, REPL ``>>>`` lines, ``if __name__ == "__main__":`` blocks) are
    dropped from the chosen block, because they are usage demos, not the solution, and can
    fail or block (``input()``) on their own.
``strip_examples(code)``
    The top-level example statements dropped (also used for a raw generation that writes
    its own function; where a raw continuation's function ends is
    :func:`common.code_units.function_span`).
``resolve_name(code, wanted)``
    MBPP models name their own function. If the tests call ``wanted`` and the code does not
    define it: exactly one top-level function -> alias it; several, of which exactly one is
    called by none of the others (a function calling itself does not count) -> alias that one
    (a documented extension: the helpers are called by the main function). The
    ``Extraction.note`` says which happened.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
import warnings
from dataclasses import dataclass

FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.M | re.S)
NOT_PYTHON = {"bash", "sh", "shell", "console", "text", "txt", "output", "json", "plaintext",
              "c", "cpp", "java", "javascript", "js", "sql", "yaml", "html"}


@dataclass(frozen=True)
class Extraction:
    """Code to run plus how it was obtained.

    ``alias_of``: bind the tests' name to this function before testing (MBPP), else None.
    ``note``: human-readable account (block chosen, lines dropped, alias made).
    """

    code: str
    alias_of: str | None = None
    note: str = ""
    found: bool = True


def code_blocks(answer: str) -> list[str]:
    """Fenced code blocks that may be Python, in order; a last unclosed fence runs to the end."""
    blocks = []
    for m in FENCE.finditer(answer):
        lang = m.group(1).lower()
        if lang in NOT_PYTHON:
            continue
        blocks.append(textwrap.dedent(m.group(2)))
    return blocks


def _parses(code: str) -> ast.Module | None:
    with warnings.catch_warnings():  # model code's invalid escapes are its business, not ours
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return ast.parse(code)
        except (SyntaxError, ValueError):
            return None


def defined_functions(code: str) -> list[str]:
    """Top-level function names, in order (empty if the code does not parse)."""
    tree = _parses(code)
    if tree is None:
        return [m for m in re.findall(r"^def\s+(\w+)\s*\(", code, re.M)]
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _is_repl(code: str) -> bool:
    lines = [ln for ln in code.splitlines() if ln.strip()]
    return bool(lines) and lines[0].lstrip().startswith(">>>")


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def strip_examples(code: str) -> tuple[str, int]:
    """Drop top-level expression statements and ``__main__`` blocks; return (code, dropped).

    Docstrings and definitions stay; code that does not parse is returned unchanged (the
    harness then reports the syntax error).
    """
    tree = _parses(code)
    if tree is None:
        return code, 0
    lines = code.splitlines(keepends=True)
    drop = []
    for i, node in enumerate(tree.body):
        is_docstring = (i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                        and isinstance(node.value.value, str))
        if (isinstance(node, ast.Expr) and not is_docstring) or _is_main_guard(node):
            drop.append((node.lineno - 1, node.end_lineno))
    for a, b in reversed(drop):
        del lines[a:b]
    return "".join(lines), len(drop)


def _unfenced_code(answer: str) -> str | None:
    """The longest run of lines from a line starting ``def``/``import``/``from``/``class`` that
    parses and defines a function (answers that forgot their fences)."""
    lines = answer.splitlines(keepends=True)
    best = None
    for i, line in enumerate(lines):
        if not re.match(r"(def|class|import|from)\s", line):
            continue
        for j in range(len(lines), i, -1):
            chunk = "".join(lines[i:j])
            tree = _parses(chunk)
            if tree is not None and any(isinstance(n, ast.FunctionDef) for n in tree.body):
                if best is None or len(chunk) > len(best):
                    best = chunk
                break
    return best


def from_chat(answer: str, entry_point: str | None = None) -> Extraction:
    """The code of a chat answer (see the module docstring for the rules)."""
    blocks = [b for b in code_blocks(answer) if not _is_repl(b)]
    note = []
    chosen = None
    if blocks:
        for rule, pick in (
                ("defines the entry point", lambda b: entry_point and _parses(b) is not None
                 and entry_point in defined_functions(b)),
                ("first block defining a function", lambda b: _parses(b) is not None
                 and defined_functions(b)),
                ("first block that parses", lambda b: _parses(b) is not None)):
            for n, b in enumerate(blocks, 1):
                if pick(b):
                    chosen = b
                    note.append(f"block {n} of {len(blocks)} ({rule})")
                    break
            if chosen is not None:
                break
        if chosen is None:
            chosen = blocks[0]
            note.append(f"block 1 of {len(blocks)} (no block parses)")
    else:
        chosen = _unfenced_code(answer)
        if chosen is None:
            return Extraction("", None, "no code found in the answer", found=False)
        note.append("no fenced block; unfenced code")
    code, dropped = strip_examples(chosen)
    if dropped:
        note.append(f"dropped {dropped} top-level example statement(s)")
    helpers = _helpers_from_other_blocks(code, [b for b in blocks if b is not chosen])
    if helpers:
        code = "\n\n".join(src for _, src in helpers) + "\n\n\n" + code
        note.append(f"added {', '.join(n for n, _ in helpers)} from other blocks (called but not "
                    f"defined in the chosen block)")
    return Extraction(code, None, "; ".join(note))


def _function_sources(code: str) -> dict[str, str]:
    tree = _parses(code)
    if tree is None:
        return {}
    lines = code.splitlines(keepends=True)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            out.setdefault(node.name, "".join(lines[start:node.end_lineno]))
    return out


def _helpers_from_other_blocks(code: str, others: list[str]) -> list[tuple[str, str]]:
    """Functions the code calls but does not define, taken from other blocks of the answer
    (answers often show a helper in its own block). One level deep, first definition wins."""
    tree = _parses(code)
    if tree is None:
        return []
    defined = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    defined |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    defined |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree)
                if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
    called = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name)]
    found: dict[str, str] = {}
    for name in called:
        if name in defined or name in found or hasattr(builtins, name):
            continue
        for block in others:
            src = _function_sources(block).get(name)
            if src is not None:
                found[name] = src
                break
    return list(found.items())


def _called_names(func: ast.FunctionDef) -> set[str]:
    """Names ``func`` calls, other than itself (recursion does not make a function a helper)."""
    return {n.func.id for n in ast.walk(func)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)} - {func.name}


def resolve_name(code: str, wanted: str | None) -> tuple[str | None, str]:
    """``(alias_of, note)`` for the tests' function name ``wanted`` (see the module docstring)."""
    if not wanted:
        return None, ""
    tree = _parses(code)
    if tree is None:
        return None, ""
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    names = [f.name for f in funcs]
    if wanted in names or any(isinstance(n, ast.ClassDef) and n.name == wanted for n in tree.body):
        return None, ""
    if len(funcs) == 1:
        return names[0], f"aliased {names[0]} as {wanted} (the only function defined)"
    if len(funcs) > 1:
        called = set().union(*(_called_names(f) for f in funcs))
        roots = [n for n in names if n not in called]
        if len(roots) == 1:
            return roots[0], (f"aliased {roots[0]} as {wanted} (of {len(funcs)} functions, the only "
                              f"one the others do not call)")
        return None, f"tests call {wanted}; the code defines {', '.join(names)}: no alias chosen"
    return None, f"tests call {wanted}; the code defines no function"
