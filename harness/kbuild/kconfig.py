"""Kconfig knowledge for `harness build`: config fragments, the tree's Kconfig
entries (where a symbol is defined, what it depends on, what selects it) and a
tristate evaluator, so that an option that did not survive `olddefconfig` is
reported with the dependency that is missing.

Best effort by design: it reads the Kconfig language's common subset (config,
menuconfig, choice, menu, if, source, depends on, select, prompts) starting
from the tree's top-level Kconfig, following `source` with $(SRCARCH)
substituted, so that enclosing `if`/`menu` conditions count as dependencies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

# tristate levels
N, M, Y = 0, 1, 2
LEVEL = {"n": N, "m": M, "y": Y}
NAME = {N: "n", M: "m", Y: "y"}

TYPE_WORDS = ("bool", "tristate", "string", "int", "hex", "def_bool", "def_tristate")
BLOCK_WORDS = ("config", "menuconfig", "choice", "endchoice", "menu", "endmenu", "comment", "if", "endif",
               "source", "osource", "rsource", "orsource", "mainmenu")


# --------------------------------------------------------------------------- fragments

def parse_fragment(text: str) -> dict[str, str]:
    """CONFIG_X -> value ('y', 'm', 'n' for "is not set", or the literal) of one fragment."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        m = re.fullmatch(r"# (CONFIG_\w+) is not set", line)
        if m:
            out[m.group(1)] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip('"')
    return out


def merge_fragments(texts: Iterable[str]) -> dict[str, str]:
    """What the fragments ask for together: a later fragment overrides an earlier one
    (merge_config.sh's rule)."""
    merged: dict[str, str] = {}
    for text in texts:
        merged.update(parse_fragment(text))
    return merged


def fragment_overrides(named: Iterable[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
    """(option, earlier value, later value, fragment name) for every value a later fragment changes."""
    seen: dict[str, str] = {}
    out = []
    for name, text in named:
        for opt, value in parse_fragment(text).items():
            if opt in seen and seen[opt] != value:
                out.append((opt, seen[opt], value, name))
            seen[opt] = value
    return out


# --------------------------------------------------------------------------- the Kconfig index

@dataclass
class Entry:
    """One definition of a symbol (a symbol may be defined in several places)."""

    name: str
    file: str
    line: int
    type: str = ""
    prompt: bool = False
    depends: list[str] = field(default_factory=list)  # own `depends on` + enclosing if/menu/choice
    in_choice: bool = False


@dataclass
class KconfigIndex:
    entries: dict[str, list[Entry]] = field(default_factory=dict)
    selected_by: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # X -> [(selector, "if" expr)]
    files: int = 0

    def add(self, entry: Entry) -> None:
        self.entries.setdefault(entry.name, []).append(entry)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) with backslash continuations joined; help text dropped."""
    out: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        stripped = line.strip()
        if stripped in ("help", "---help---"):
            out.append((start + 1, stripped))
            # help text: every following line indented deeper than the first text line's start
            indent = None
            while i < len(lines):
                nxt = lines[i]
                if not nxt.strip():
                    i += 1
                    continue
                width = len(nxt.expandtabs()) - len(nxt.expandtabs().lstrip())
                if indent is None:
                    head = len(line.expandtabs()) - len(line.expandtabs().lstrip())
                    if width <= head:
                        break
                    indent = width
                elif width < indent:
                    break
                i += 1
            continue
        out.append((start + 1, line))
    return out


def _strip_comment(line: str) -> str:
    """Drop a '#' comment that is not inside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def _subst(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), text)


def build_index(tree: Path, srcarch: str = "x86", arch: str = "x86_64") -> KconfigIndex:
    """Read the tree's Kconfig from the top, following `source`."""
    tree = Path(tree)
    variables = {"SRCARCH": srcarch, "ARCH": arch, "srctree": str(tree)}
    index = KconfigIndex()
    seen: set[Path] = set()

    def read(path: Path, frames: list[str]) -> None:
        path = path.resolve()
        if path in seen or not path.is_file():
            return
        seen.add(path)
        index.files += 1
        rel = str(path.relative_to(tree.resolve())) if path.is_relative_to(tree.resolve()) else str(path)
        stack: list[list[str]] = []  # frames opened in this file: if/menu/choice conditions
        choice_depth = 0
        current: Optional[Entry] = None
        block = ""  # what `depends on` lines attach to: "entry", "menu", "choice" or "other"
        for lineno, raw in _logical_lines(path.read_text(errors="replace")):
            line = _subst(_strip_comment(raw).strip(), variables)
            if not line:
                continue
            word, _, rest = line.partition(" ")
            word = word.strip()
            rest = rest.strip()
            if word in ("help", "---help---"):
                continue
            if word in ("config", "menuconfig"):
                current = Entry(rest, rel, lineno, in_choice=choice_depth > 0,
                                depends=frames + [cond for frame in stack for cond in frame])
                index.add(current)
                block = "entry"
            elif word in ("menu", "choice"):
                stack.append([])
                current, block = None, word
                if word == "choice":
                    choice_depth += 1
            elif word in ("endmenu", "endchoice", "endif"):
                if stack:
                    stack.pop()
                if word == "endchoice":
                    choice_depth = max(0, choice_depth - 1)
                current, block = None, "other"
            elif word == "if":
                stack.append([rest])
                current, block = None, "other"
            elif word in ("comment", "mainmenu"):
                current, block = None, "other"
            elif word in ("source", "osource", "rsource", "orsource"):
                target = rest.strip('"')
                base = path.parent if word in ("rsource", "orsource") else tree
                inherited = frames + [c for s in stack for c in s]
                for sub in sorted(base.glob(target)) if any(ch in target for ch in "*?[") else [base / target]:
                    read(sub, inherited)
                current, block = None, "other"
            elif word == "depends" and rest.startswith("on "):
                expr = rest[3:].strip()
                if block == "entry" and current is not None:
                    current.depends.append(expr)
                elif block in ("menu", "choice") and stack:
                    stack[-1].append(expr)
            elif word in TYPE_WORDS and current is not None:
                current.type = current.type or word.replace("def_", "")
                if not word.startswith("def_") and rest.startswith('"'):
                    current.prompt = True
            elif word == "prompt" and current is not None:
                current.prompt = True
            elif word == "select" and current is not None:
                target, _, cond = rest.partition(" if ")
                index.selected_by.setdefault(target.strip(), []).append((current.name, cond.strip()))

    read(tree / "Kconfig", [])
    return index


# --------------------------------------------------------------------------- expressions

_TOKEN = re.compile(r'\s*(\|\||&&|!=|<=|>=|=|<|>|!|\(|\)|"[^"]*"|\'[^\']*\'|[A-Za-z0-9_.$-]+)')


def _tokens(expr: str) -> list[str]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot parse Kconfig expression {expr!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


class _Eval:
    """Recursive-descent tristate evaluation over a config (CONFIG_-less names)."""

    def __init__(self, tokens: list[str], values: dict[str, str]):
        self.t, self.i, self.values = tokens, 0, values

    def peek(self) -> Optional[str]:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self) -> str:
        tok = self.t[self.i]
        self.i += 1
        return tok

    def expr(self) -> int:
        v = self.conj()
        while self.peek() == "||":
            self.take()
            v = max(v, self.conj())
        return v

    def conj(self) -> int:
        v = self.unary()
        while self.peek() == "&&":
            self.take()
            v = min(v, self.unary())
        return v

    def unary(self) -> int:
        if self.peek() == "!":
            self.take()
            return Y - self.unary()
        if self.peek() == "(":
            self.take()
            v = self.expr()
            if self.peek() == ")":
                self.take()
            return v
        left = self.take()
        if self.peek() in ("=", "!=", "<", "<=", ">", ">="):
            op, right = self.take(), self.take()
            a, b = self.raw(left), self.raw(right)
            try:
                a_n, b_n = int(a, 0), int(b, 0)
                cmp = (a_n > b_n) - (a_n < b_n)
            except ValueError:
                cmp = (a > b) - (a < b)
            ok = {"=": cmp == 0, "!=": cmp != 0, "<": cmp < 0, "<=": cmp <= 0, ">": cmp > 0, ">=": cmp >= 0}[op]
            return Y if ok else N
        return self.level(left)

    def raw(self, tok: str) -> str:
        if tok[:1] in "\"'":
            return tok[1:-1]
        if tok in LEVEL:
            return tok
        if tok not in self.values and re.fullmatch(r"-?(0x[0-9a-fA-F]+|\d+)", tok):
            return tok  # a number constant
        return self.values.get(tok, "n")

    def level(self, tok: str) -> int:
        if tok == "m":
            return M if self.values.get("MODULES") == "y" else N
        return LEVEL.get(self.raw(tok), N)


def evaluate(expr: str, values: dict[str, str]) -> int:
    """Tristate value (0/1/2) of a Kconfig expression; ``values`` maps NAME -> 'y'/'m'/'n'/literal."""
    return _Eval(_tokens(expr), values).expr()


def conjuncts(expr: str) -> list[str]:
    """Top-level `&&` parts of an expression (parentheses respected)."""
    parts, depth, cur = [], 0, []
    for tok in _tokens(expr):
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        if tok == "&&" and depth == 0:
            parts.append(" ".join(cur))
            cur = []
        else:
            cur.append(tok)
    if cur:
        parts.append(" ".join(cur))
    return [_unwrap(p) for p in parts]


def _unwrap(part: str) -> str:
    p = part.strip()
    if p.startswith("( ") and p.endswith(" )"):
        inner = p[2:-2]
        depth = 0
        for tok in _tokens(inner):
            depth += tok == "("
            depth -= tok == ")"
            if depth < 0:
                return p
        return inner
    return p


# --------------------------------------------------------------------------- explaining

@dataclass(frozen=True)
class MissingOption:
    """A requested option the final .config does not have as asked."""

    option: str  # CONFIG_X
    wanted: str
    got: str
    reason: str

    def line(self) -> str:
        return f"{self.option}={self.wanted} -> {self.got}: {self.reason}"


def values_of(config: dict[str, str]) -> dict[str, str]:
    """A parsed .config (CONFIG_X -> v) as evaluator values (X -> v)."""
    return {k[len("CONFIG_"):]: v for k, v in config.items() if k.startswith("CONFIG_")}


def _unmet(entry: Entry, values: dict[str, str], need: int) -> list[tuple[str, int]]:
    out = []
    for dep in entry.depends:
        try:
            for part in conjuncts(dep):
                level = evaluate(part, values)
                if level < need:
                    out.append((part, level))
        except ValueError:
            continue
    return out


def explain(name: str, wanted: str, values: dict[str, str], index: KconfigIndex, depth: int = 2) -> str:
    """Why NAME (no CONFIG_ prefix) is not at ``wanted``: the missing dependency, in words."""
    entries = index.entries.get(name)
    got = values.get(name, "n")
    if not entries:
        return "not in this tree (no `config " + name + "` in its Kconfig files)"
    if wanted == "n":
        sel = [s for s, cond in index.selected_by.get(name, []) if values.get(s, "n") in ("y", "m")
               and (not cond or _safe_eval(cond, values) > N)]
        return f"selected by {', '.join(sorted(set(sel)))}" if sel else "forced on by its default or a select"
    need = LEVEL.get(wanted, M)
    if wanted not in LEVEL:
        need = M
    best = min((_unmet(e, values, need) for e in entries), key=len)
    if best:
        parts = []
        for part, level in best:
            text = f"{part} (={NAME[level]})"
            if depth > 0 and re.fullmatch(r"\w+", part) and part in index.entries:
                deeper = explain(part, "y" if need == Y else "m", values, index, depth - 1)
                if deeper.startswith("needs "):
                    text += " <- " + part + " " + deeper
                elif deeper.startswith("not in this tree"):
                    text += " <- " + part + " is not in this tree"
            parts.append(text)
        return "needs " + ", ".join(parts)
    if wanted == "y" and got == "m":
        return "only m is possible here (a dependency is a module)"
    if not any(e.prompt for e in entries):
        return "has no prompt: only set when another option selects it"
    if any(e.in_choice for e in entries):
        return "another member of its choice was picked"
    if wanted not in LEVEL:
        return f"value {got!r} kept instead of {wanted!r} (out of range or invalid?)"
    return "dependencies are met but olddefconfig dropped it (check `make menuconfig`)"


def _safe_eval(expr: str, values: dict[str, str]) -> int:
    try:
        return evaluate(expr, values)
    except ValueError:
        return N


def satisfied(wanted: str, got: Optional[str]) -> bool:
    """Does a final value satisfy a request? m asked and y got is fine (built in)."""
    got = got or "n"
    if wanted == got:
        return True
    if wanted == "m" and got == "y":
        return True
    return False


def missing_options(requested: dict[str, str], config: dict[str, str], index: KconfigIndex) -> list[MissingOption]:
    """Every requested option the final config does not satisfy, with the reason."""
    values = values_of(config)
    out = []
    for opt, wanted in requested.items():
        got = config.get(opt, "n")
        if satisfied(wanted, got):
            continue
        out.append(MissingOption(opt, wanted, got, explain(opt[len("CONFIG_"):], wanted, values, index)))
    return out
