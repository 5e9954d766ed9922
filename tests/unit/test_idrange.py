"""Which ids exist in a user namespace, read from its uid_map text."""

from __future__ import annotations

from ocislim.idrange import range_mapped

HOST = "         0          0 4294967295\n"
NESTED_ROOT = "         0       1000          1\n"
ROOTLESS_CONTAINER = "0 1000 1\n1 100000 65536\n"


def test_the_host_namespace_holds_every_range() -> None:
    assert range_mapped(100000, 65536, HOST)
    assert range_mapped(1878982656, 65536, HOST)


def test_a_single_id_namespace_holds_only_that_id() -> None:
    assert range_mapped(0, 1, NESTED_ROOT)
    assert not range_mapped(0, 2, NESTED_ROOT)
    assert not range_mapped(1878982656, 65536, NESTED_ROOT)


def test_a_range_must_lie_within_one_line() -> None:
    assert range_mapped(1, 65536, ROOTLESS_CONTAINER)
    assert not range_mapped(0, 65537, ROOTLESS_CONTAINER)  # spans two lines
    assert not range_mapped(2, 65536, ROOTLESS_CONTAINER)


def test_garbage_lines_map_nothing() -> None:
    assert not range_mapped(0, 1, "")
    assert not range_mapped(0, 1, "x y z\n0 0\n")
