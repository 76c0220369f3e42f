"""Mangled C++ and Rust symbol names -> the names people read, without parameters.

syzkaller demangles every frame of a report (``demangle.Filter(name, demangle.NoParams)``) so that a
Rust or C++ function is titled ``kernel::print::call_printk`` rather than
``_ZN6kernel5print11call_printk17h2a1b6c3d4e5f6a7bE``.  The common shapes are decoded here in pure
Python: Itanium C++ plain and nested names (ctors, dtors, ``std::``), Rust legacy names (the hash
dropped, ``$LT$``-style escapes decoded) and Rust v0 paths (crates, modules, closures).  Anything
else (templates, substitutions, operators, v0 impl paths) goes to binutils' ``c++filt -p`` when it is
installed, and stays as it is when it is not: a name is never lost to demangling.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import Optional

MAX_NAME = 512  # longer "names" are user-space noise, not symbols
CXXFILT_TIMEOUT = 10  # seconds for one c++filt run
_DECIMAL = re.compile(r"[0-9]+")
_RUST_HASH = re.compile(r"17h[0-9a-f]{16}E$")
_RUST_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")", "C": ","}
_CXXFILT_BRACKETS = re.compile(r"\[[0-9a-f]+\]")  # c++filt's v0 crate disambiguators: "core[3c1c0]"


class _Unsupported(Exception):
    """A mangling this module does not decode (c++filt may)."""


def is_mangled(name: str) -> bool:
    return (name.startswith("_Z") or name.startswith("_R")) and 3 < len(name) <= MAX_NAME


def demangle(name: str) -> str:
    """``name`` demangled without its parameters, or unchanged when it is no mangled name."""
    if not is_mangled(name):
        return name
    found = demangle_pure(name)
    if found is not None:
        return found
    return _cxxfilt([name]).get(name, name)


def demangle_pure(name: str) -> Optional[str]:
    """The pure-Python decoding, or None for a mangling it does not handle."""
    try:
        if name.startswith("_R"):
            return _RustV0(name).symbol()
        if _RUST_HASH.search(name) and name.startswith("_ZN"):
            return _rust_legacy(name)
        return _Itanium(name).symbol()
    except (_Unsupported, IndexError, ValueError):
        return None


def _cxxfilt(names: list[str]) -> dict[str, str]:
    exe = shutil.which("c++filt")
    if exe is None:
        return {}
    try:
        out = subprocess.run([exe, "-p", "--", *names], capture_output=True, text=True,
                             timeout=CXXFILT_TIMEOUT, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {}
    if len(out) != len(names):
        return {}
    return {n: _CXXFILT_BRACKETS.sub("", d) for n, d in zip(names, out) if d and d != n}


def _counted(text: str, pos: int, separator: str = "") -> tuple[str, int]:
    """The length-prefixed identifier at ``pos`` ("5clone"; Rust v0 may put "_" after the length)
    and the position after it."""
    m = _DECIMAL.match(text, pos)
    if m is None:
        raise _Unsupported(text)
    length, pos = int(m.group(0)), m.end()
    if separator and text.startswith(separator, pos):
        pos += len(separator)
    name = text[pos:pos + length]
    if len(name) != length:
        raise _Unsupported(text)
    return name, pos + length


# ---------------------------------------------------------------- Rust legacy (_ZN...17h<hash>E)


def _rust_legacy(name: str) -> str:
    parts = _Itanium(name[: -len("17h0123456789abcdefE")] + "E").nested_parts()
    return "::".join(_rust_unescape(p) for p in parts)


def _rust_unescape(part: str) -> str:
    if part.startswith("_$"):
        part = part[1:]
    out, i = [], 0
    while i < len(part):
        if part.startswith("..", i):
            out.append("::")
            i += 2
        elif part[i] == "$":
            end = part.find("$", i + 1)
            if end == -1:
                raise _Unsupported(part)
            code = part[i + 1:end]
            if code in _RUST_ESCAPES:
                out.append(_RUST_ESCAPES[code])
            elif code.startswith("u") and len(code) > 1:
                out.append(chr(int(code[1:], 16)))
            else:
                raise _Unsupported(part)
            i = end + 1
        else:
            out.append(part[i])
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- Itanium C++ (_Z...)


class _Itanium:
    """Names of the Itanium C++ ABI mangling: plain, nested (N...E), std:: and ctor/dtor; no templates."""

    def __init__(self, text: str) -> None:
        self.s, self.i = text, 2  # after "_Z"

    def peek(self, n: int = 1) -> str:
        return self.s[self.i:self.i + n]

    def source_name(self) -> str:
        name, self.i = _counted(self.s, self.i)
        return name

    def nested_parts(self) -> list[str]:
        if self.peek() != "N":
            raise _Unsupported(self.s)
        self.i += 1
        while self.peek() in ("r", "V", "K", "R", "O"):  # cv- and ref-qualifiers of a method
            self.i += 1
        parts: list[str] = []
        if self.peek(2) == "St":
            parts.append("std")
            self.i += 2
        while self.peek() != "E":
            ch = self.peek()
            if ch.isdigit():
                parts.append(self.source_name())
            elif ch in ("C", "D") and self.peek(2)[1:] in ("0", "1", "2", "3", "4", "5", "I") and parts:
                parts.append(("~" if ch == "D" else "") + parts[-1])
                self.i += 2
            else:
                raise _Unsupported(self.s)  # templates, substitutions, operators, local names
        self.i += 1
        if not parts:
            raise _Unsupported(self.s)
        return parts

    def symbol(self) -> str:
        if self.peek() == "N":
            return "::".join(self.nested_parts())
        if self.peek(2) == "St":
            self.i += 2
            return "std::" + self.source_name()
        if self.peek().isdigit():
            name = self.source_name()
            if self.peek() == "I":
                raise _Unsupported(self.s)
            return name
        raise _Unsupported(self.s)


# ---------------------------------------------------------------- Rust v0 (_R...)


class _RustV0:
    """Rust v0 symbol paths made of crate roots, namespaces and closures; impls and generics are not."""

    def __init__(self, text: str) -> None:
        self.s, self.i = text, 2  # after "_R"

    def peek(self) -> str:
        return self.s[self.i:self.i + 1]

    def take(self) -> str:
        ch = self.s[self.i]
        self.i += 1
        return ch

    def base62(self) -> int:
        if self.peek() == "_":
            self.i += 1
            return 0
        m = re.compile(r"[0-9a-zA-Z]+_").match(self.s, self.i)
        if m is None:
            raise _Unsupported(self.s)
        self.i = m.end()
        value = 0
        for ch in m.group(0)[:-1]:
            value = value * 62 + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".index(ch)
        return value + 1

    def disambiguator(self) -> int:
        if self.peek() == "s":
            self.i += 1
            return self.base62()
        return 0

    def identifier(self) -> str:
        if self.peek() == "u":
            raise _Unsupported(self.s)  # punycode
        name, self.i = _counted(self.s, self.i, separator="_")
        return name

    def path(self) -> list[str]:
        tag = self.take()
        if tag == "C":
            self.disambiguator()
            return [self.identifier()]
        if tag == "N":
            ns = self.take()
            parent = self.path()
            dis = self.disambiguator()
            name = self.identifier()
            if ns == "C":
                return parent + [f"{{closure#{dis}}}" if not name else f"{{closure:{name}#{dis}}}"]
            if ns.islower():
                return parent + [name]
            raise _Unsupported(self.s)
        raise _Unsupported(self.s)  # impl paths, generic args, back-references

    def symbol(self) -> str:
        if self.peek().isdigit():
            raise _Unsupported(self.s)  # an encoding version
        return "::".join(self.path())
