"""php-library: a touched file of PHP's shared include directories keeps its library."""

from __future__ import annotations

from ocislim.slim.phplibs import PhpLibraries
from ocislim.slim.pkgrules import DpkgIndex
from ocislim.slim.plan import Planner
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from

TWIG = "usr/share/php/Twig"


def members() -> list[M]:
    return [
        M(f"{TWIG}/autoload.php", data=b"<?php spl_autoload_register(...);"),
        M(f"{TWIG}/Environment.php", data=b"<?php class Environment {}"),
        M(f"{TWIG}/Extension/Core.php", data=b"<?php class Core {}"),
        M("usr/share/php/Twig/Unowned.php", data=b"<?php"),
        M("usr/share/php/Other/Thing.php", data=b"<?php"),
        M("usr/share/doc/php-twig/copyright", data=b"BSD"),
        M("usr/share/pear/Archive/Tar.php", data=b"<?php"),
        M("usr/share/pear/Archive/Zip.php", data=b"<?php"),
        M("usr/local/lib/php/extensions/no-debug/opcache.so", data=b"\x7fELF"),
        M(
            "var/lib/dpkg/info/php-twig.list",
            data=b"/usr/share/php\n/usr/share/php/Twig\n/usr/share/php/Twig/autoload.php\n"
            b"/usr/share/php/Twig/Environment.php\n/usr/share/php/Twig/Extension\n"
            b"/usr/share/php/Twig/Extension/Core.php\n/usr/share/doc/php-twig/copyright\n",
        ),
    ]


def kept(touched: list[str], enabled: set[str] | None = None) -> set[str]:
    files = members()
    tree = tree_from(files)
    rules = PhpLibraries(tree, DpkgIndex(tree, reader(files)), enabled or {"php-library"})
    planner = Planner(tree)
    planner.add(rules.seeds(touched))
    return set(planner.kept_paths)


def test_a_touched_class_keeps_the_files_its_package_installs_there() -> None:
    out = kept(["/usr/share/php/Twig/autoload.php"])
    assert {"/usr/share/php/Twig/Environment.php", "/usr/share/php/Twig/Extension/Core.php"} <= out
    assert "/usr/share/php/Twig/Unowned.php" not in out  # not the package's
    assert "/usr/share/doc/php-twig/copyright" not in out  # not below an include directory
    assert not any(p.startswith("/usr/share/php/Other") for p in out)


def test_without_a_package_the_directory_below_the_include_root_is_kept() -> None:
    out = kept(["/usr/share/pear/Archive/Tar.php"])
    assert "/usr/share/pear/Archive/Zip.php" in out
    assert not kept(["/usr/local/lib/php/extensions/no-debug/opcache.so"])  # php-runtime's
    assert not kept(["/usr/share/pear/Archive/Tar.php"], enabled={"php-runtime"})
