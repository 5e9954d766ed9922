"""Traced files as keep-plan seeds, each reason naming the program that touched the file
and how (``trace: python3 /app/app.py read,stat``).

The sandbox's one analysis of the run already labels every access with its program
(:attr:`~ocislim.sandbox.FileReport.by_program`); this only turns the image files
among them into seeds.  Pure.
"""

from __future__ import annotations

from ocislim.sandbox import FileReport
from ocislim.slim.plan import Reason, Seed


def trace_seeds(report: FileReport) -> list[Seed]:
    """One seed per (path, program), sorted so; a final symlink is kept as the link (and
    its target through the plan's symlink rule).  Paths the run created (absent from
    the image) are seeds too: the keeper keeps the directory they were made in."""
    seeds = []
    for program, category, access in report.by_program:
        if category in ("files", "created"):
            reason = Reason("trace", process=program, access=access.access)
            seeds.append(Seed(access.path, reason, follow=False))
    return seeds
