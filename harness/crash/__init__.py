"""Crash knowledge: console text in, crash reports out.

``oopses`` is the declarative table (formats, titles, skip lists, corrupted rules), ``console``
applies it to a log and gives ``CrashReport``s (Title, AltTitles, Type, Corrupted, GuiltyFile),
``symbolize`` decodes frames against a DWARF vmlinux, and ``report`` renders them as text or JSON.
"""
