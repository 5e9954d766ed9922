"""What the runtime and language rules leave out inside the trees they keep whole."""

from __future__ import annotations

from ocislim.slim.langrules import LangRules
from ocislim.slim.plan import Planner, Reason, Seed
from ocislim.slim.runtimerules import RuntimeRules
from tests.synth import M
from tests.unit.slim_synth import python_tree, reader, tree_from

LIB = "/usr/lib/python3.11"
DYN = f"{LIB}/lib-dynload"
TRACE = Reason("trace", process="python3", access=("read",))


def kept(members: list[M], touched: list[str], seeds: list[Seed]) -> set[str]:
    planner = Planner(tree_from(members))
    planner.add([Seed(p, TRACE) for p in touched])
    planner.add(seeds)
    return set(planner.kept_paths)


def test_the_stdlib_leaves_out_rare_modules_with_large_closures_unless_traced() -> None:
    members = [
        *python_tree(),
        M(f"{DYN}/nis.cpython-311-x86_64-linux-gnu.so", data=b"\x7fELF"),
        M(f"{DYN}/_dbm.cpython-311-x86_64-linux-gnu.so", data=b"\x7fELF"),
        M(f"{DYN}/readline.cpython-311-x86_64-linux-gnu.so", data=b"\x7fELF"),
        M(f"{DYN}/_json.cpython-311-x86_64-linux-gnu.so", data=b"\x7fELF"),
        M(f"{LIB}/_pydecimal.py", data=b"# decimal"),
    ]
    tree = tree_from(members)

    def run(touched: list[str], enabled: set[str]) -> set[str]:
        return kept(members, touched, LangRules(tree, reader(members), enabled).seeds(touched))

    result = run([f"{LIB}/os.py"], {"python-stdlib"})
    assert f"{DYN}/_json.cpython-311-x86_64-linux-gnu.so" in result
    for left_out in ("nis", "_dbm", "readline"):
        assert f"{DYN}/{left_out}.cpython-311-x86_64-linux-gnu.so" not in result
    assert f"{LIB}/_pydecimal.py" not in result
    readline = f"{DYN}/readline.cpython-311-x86_64-linux-gnu.so"
    assert readline in run([f"{LIB}/os.py", readline], {"python-stdlib"})  # traced: kept
    extras = run([f"{LIB}/os.py"], {"python-stdlib", "python-stdlib-extras"})
    assert f"{DYN}/nis.cpython-311-x86_64-linux-gnu.so" in extras


def test_perl_rules_leave_out_c_headers_and_pod_documentation() -> None:
    core = "usr/lib/x86_64-linux-gnu/perl/5.36"
    members = [
        M(f"{core}/POSIX.pm", data=b"1;"),
        M(f"{core}/CORE/perl.h", data=b"/* h */"),
        M(f"{core}/CORE/libperl.so", data=b"\x7fELF"),
        M("usr/share/perl5/DateTime/Locale/en_US.pm", data=b"1;"),
        M("usr/share/perl5/DateTime/Locale/en_US.pod", data=b"=pod"),
    ]
    tree = tree_from(members)
    touched = [f"/{core}/POSIX.pm"]
    seeds = RuntimeRules(tree, {"perl-core-whole", "perl-vendor"}, reader(members)).seeds(touched)
    result = kept(members, touched, seeds)
    assert f"/{core}/CORE/libperl.so" in result and f"/{core}/CORE/perl.h" not in result
    assert "/usr/share/perl5/DateTime/Locale/en_US.pm" in result
    assert "/usr/share/perl5/DateTime/Locale/en_US.pod" not in result


def test_a_touched_gem_keeps_the_gem_its_specification_and_its_extensions() -> None:
    home = "usr/local/bundle"
    members = [
        M(f"{home}/gems/rack-3.0.8/lib/rack.rb", data=b"# rack"),
        M(f"{home}/gems/rack-3.0.8/lib/rack/lazy.rb", data=b"# lazy"),
        M(f"{home}/gems/puma-6.4.0/lib/puma.rb", data=b"# puma"),
        M(f"{home}/specifications/rack-3.0.8.gemspec", data=b"spec"),
        M(f"{home}/specifications/puma-6.4.0.gemspec", data=b"spec"),
        M(f"{home}/extensions/x86_64-linux/3.2.0/rack-3.0.8/gem.build_complete", data=b""),
        M(f"{home}/extensions/x86_64-linux/3.2.0/puma-6.4.0/puma_http11.so", data=b"\x7fELF"),
        M("srv/gems/not-a-gem/x.rb", data=b"# no specifications beside it"),
    ]
    tree = tree_from(members)
    touched = [f"/{home}/gems/rack-3.0.8/lib/rack.rb", "/srv/gems/not-a-gem/x.rb"]
    seeds = RuntimeRules(tree, {"ruby-gem"}, reader(members)).seeds(touched)
    result = kept(members, touched, seeds)
    assert f"/{home}/gems/rack-3.0.8/lib/rack/lazy.rb" in result
    assert f"/{home}/specifications/rack-3.0.8.gemspec" in result
    assert f"/{home}/extensions/x86_64-linux/3.2.0/rack-3.0.8/gem.build_complete" in result
    assert not {p for p in result if "puma" in p}
    assert {s.reason.rule for s in seeds} == {"ruby-gem"}
    assert RuntimeRules(tree, set(), reader(members)).seeds(touched) == []
