"""The README and docs/rules.md name every keep rule a user can switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocislim.slim.elfdeps import lazy_rule_names
from ocislim.slim.keeprules import rule_names

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("document", ["README.md", "docs/rules.md"])
def test_every_switchable_rule_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    missing = [n for n in (*rule_names(), *lazy_rule_names()) if f"`{n}`" not in text]
    assert missing == []
