"""Application, written-place, runtime and package rules on fabricated layouts."""

from __future__ import annotations

import random
import re

import pytest

from ocislim.slim.apprules import (
    app_root,
    app_seeds,
    binary_named_seeds,
    counted_as_run,
    home_seeds,
    script_command_seeds,
    skeleton_seeds,
    written_seeds,
)
from ocislim.slim.commandtext import absolute_paths, command_words, quoted_commands
from ocislim.slim.javapaths import java_option_files
from ocislim.slim.keeprules import KEEP_RULES, default_enabled, rule_names
from ocislim.slim.pkgrules import (
    DpkgIndex,
    PackageRules,
    PackageStateDirs,
    PerlDistributions,
    level_keeps,
    package_summary,
)
from ocislim.slim.plan import Planner, Reason, Seed
from ocislim.slim.runtimerules import RuntimeRules
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from


def trace(path: str, *access: str) -> Seed:
    return Seed(path, Reason("trace", process="nginx", access=access), follow=False)


def kept(members: list[M], seeds: list[Seed]) -> set[str]:
    planner = Planner(tree_from(members))
    planner.add(seeds)
    return set(planner.kept_paths)


def test_every_rule_is_named_described_and_unique() -> None:
    names = rule_names()
    assert len(names) == len(set(names))
    assert all(r.description for r in KEEP_RULES)
    for name in ("written-places", "skeleton-dirs", "app-whole", "script-commands"):
        assert name in default_enabled()
    for name in ("java-runtime", "perl-inc", "web-server", "tool-helpers", "zoneinfo-runtime"):
        assert name in default_enabled()
    assert not {"package-data", "package-helpers", "package-whole"} & default_enabled()


WRITES = [
    M("var/lib/nginx", "dir", mode=0o700, uid=33),
    M("var/log/nginx", "dir", mode=0o750),
    M("var/log/nginx/old.log", data=b"x"),
    M("var/cache/other/file", data=b"y"),
    M("etc/app.conf", data=b"conf"),
]


def test_a_directory_the_program_created_in_is_kept_not_its_siblings() -> None:
    tree = tree_from(WRITES)
    seeds, places = written_seeds(
        tree,
        [
            trace("/var/lib/nginx/body", "create"),  # mkdir in a source dir
            trace("/var/log/nginx/new/deep.log", "create", "write"),  # nested: nearest dir
            trace("/etc/app.conf", "read", "write"),  # an existing file written
            trace("/nowhere/looked", "stat"),  # looked for only: nothing
        ],
    )
    assert [s.path for s in seeds] == ["/etc/app.conf"]  # created paths are not kept
    assert {s.path for s in places} == {"/var/lib/nginx", "/var/log/nginx", "/etc/app.conf"}
    assert all(s.reason.rule == "written-places" for s in places)
    result = kept(WRITES, [*seeds, *places])
    assert "/var/lib/nginx" in result and "/var/log/nginx" in result
    assert "/var/log/nginx/old.log" not in result  # the directory, not its content


def test_skeleton_dirs_present_in_the_source_and_volumes() -> None:
    members = [
        M("tmp", "dir", mode=0o1777),
        M("run", "dir"),
        M("var/run", "symlink", link="/run"),
        M("data", "dir"),
        M("var/tmp/junk", data=b"j"),
    ]
    seeds = skeleton_seeds(tree_from(members), ["/data", "/absent"])
    assert {s.path for s in seeds} == {"/tmp", "/run", "/var/run", "/var/tmp", "/data"}
    assert not any(s.recursive for s in seeds)
    result = kept(members, seeds)
    assert "/var/tmp/junk" not in result and "/run" in result


HOMES = [
    M("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
    M("root", "dir", mode=0o700),
    M("root/.profile", data=b"# root"),
    M("home", "dir", mode=0o755),
    M("home/app", "dir", mode=0o750, uid=1000, gid=1000),
    M("home/app/.gitconfig", data=b"[user]\n\tname = app\n", uid=1000),
    M("home/app/.cache/pip/big.whl", data=b"w" * 10),
    M("home/app/notes.txt", data=b"not configuration"),
    M("home/app/.history", data=b"h" * (70 << 10)),
    M("srv/data", "dir"),
]


def test_the_home_of_the_image_user_is_kept_with_its_dot_files() -> None:
    tree = tree_from(HOMES)
    seeds = home_seeds(tree, reader(HOMES), ["app"], ["PATH=/bin"])
    assert {s.path for s in seeds} == {"/home/app", "/home/app/.gitconfig"}
    assert all(s.reason.rule == "skeleton-dirs" and not s.recursive for s in seeds)
    planner = Planner(tree)
    planner.add(seeds)
    assert "/home/app" in planner.kept_paths
    assert "/home/app/.cache/pip/big.whl" not in planner.kept_paths  # a cache, not config


@pytest.mark.parametrize(
    ("users", "env", "homes"),
    [
        (["", ""], [], {"/root"}),  # no USER: root
        (["1000:1000"], [], {"/home/app"}),  # a uid, with a group
        (["0"], ["HOME=/srv/data"], {"/root", "/srv/data"}),
        (["nobody"], ["HOME=/missing"], set()),  # no such account, no such directory
    ],
)
def test_home_directories_by_user_name_uid_and_home(
    users: list[str], env: list[str], homes: set[str]
) -> None:
    tree = tree_from(HOMES)
    found = {s.path for s in home_seeds(tree, reader(HOMES), users, env)}
    assert {p for p in found if not p.rsplit("/", 1)[-1].startswith(".")} == homes


@pytest.mark.parametrize(
    ("directory", "root"),
    [
        ("/app", "/app"),
        ("/app/bin", "/app"),
        ("/srv/site/www", "/srv/site"),
        ("/usr/lib/git-core", "/usr/lib/git-core"),
        ("/usr/share/nodejs/express/bin", "/usr/share/nodejs/express"),
        ("/usr/lib/python3/dist-packages/flask", "/usr/lib/python3/dist-packages/flask"),
        ("/usr/bin", None),
        ("/", None),
        ("/usr/lib/x86_64-linux-gnu", None),
        ("/usr/local/bin", None),
    ],
)
def test_app_root_stops_below_system_directories(directory: str, root: str | None) -> None:
    assert app_root(directory) == root


APP = [
    M("app/bin/server.py", data=b"print(1)"),
    M("app/templates/page.html", data=b"<p>"),
    M("app/static/style.css", data=b"p{}"),
    M("usr/bin/python3", data=b"\x7fELF", mode=0o755),
    M("usr/bin/other", data=b"\x7fELF", mode=0o755),
    M("work/data.txt", data=b"d"),
]


def test_the_entrypoint_scripts_tree_and_the_workdir_are_kept_whole() -> None:
    tree = tree_from(APP)
    programs = {"python3": "/usr/bin/python3"}
    seeds = app_seeds(tree, ["python3", "bin/server.py"], "/app", programs.get)
    assert [s.path for s in seeds] == ["/app"]  # the script's tree; the workdir is the same
    assert seeds[0].recursive and seeds[0].reason.rule == "app-whole"
    seeds = app_seeds(tree, ["/bin/sh", "-c", "python3 /app/bin/server.py"], "/work", {}.get)
    assert [s.path for s in seeds] == ["/app", "/work"]
    result = kept(APP, seeds)
    assert {"/app/templates/page.html", "/app/static/style.css", "/work/data.txt"} <= result
    assert "/usr/bin/other" not in result


def test_a_command_linked_into_a_package_has_the_package_as_its_tree() -> None:
    pkg = "usr/local/lib/node_modules/tool"
    members = [
        M(f"{pkg}/bin/cli.js", data=b"#!/usr/bin/env node\nrequire('../lib/x')\n", mode=0o755),
        M(f"{pkg}/lib/x.js", data=b"module.exports = 1\n"),
        M("usr/local/bin/tool", "symlink", link="../lib/node_modules/tool/bin/cli.js"),
        M("usr/lib/jvm/jdk/bin/java", data=b"\x7fELF", mode=0o755),
        M("usr/bin/java", "symlink", link="../lib/jvm/jdk/bin/java"),
    ]
    tree = tree_from(members)
    seeds = app_seeds(tree, ["tool", "hello"], "/", {"tool": "/usr/local/bin/tool"}.get)
    assert [s.path for s in seeds] == [f"/{pkg}"]
    # A link to a compiled program is no application: the JDK is not kept whole.
    assert app_seeds(tree, ["java", "-version"], "/", {"java": "/usr/bin/java"}.get) == []


def test_script_commands_keep_the_programs_a_shell_script_names() -> None:
    text = {"/app/run.sh": "#!/bin/sh\nset -e\ngit log | gzip -c > /tmp/x # wc\n"}
    on_path = {"git": "/usr/bin/git", "gzip": "/bin/gzip", "wc": "/usr/bin/wc"}
    seeds = script_command_seeds(["/app/run.sh"], text.get, on_path.get)
    assert sorted(s.path for s in seeds) == ["/bin/gzip", "/usr/bin/git"]  # not the comment
    assert script_command_seeds(["/app/run.py"], {"/app/run.py": "#!/usr/bin/python3\ngit"}.get,
                                on_path.get) == []  # fmt: skip
    java = {"/app/Main.java": 'new ProcessBuilder("/bin/echo", "x"); // see /etc/hosts'}
    seeds = script_command_seeds(
        ["/app/Main.java"], java.get, on_path.get, {"/bin/echo"}.__contains__
    )
    assert [s.path for s in seeds] == ["/bin/echo"]  # an executable it names, not a data file


def test_script_commands_keep_the_programs_other_scripts_quote_as_commands() -> None:
    text = {
        "/app/tool.py": "#!/usr/bin/python3\nimport subprocess\n"
        'subprocess.run(["sort", "-r"])\nshutil.which("gzip")\nos.system("wc -l f")\n'
        'print("git is not run here", "date")\nx = {"tar": 1}\n'
    }
    on_path = {"sort": "/usr/bin/sort", "gzip": "/bin/gzip", "wc": "/usr/bin/wc",
               "git": "/usr/bin/git", "date": "/usr/bin/date", "tar": "/bin/tar"}  # fmt: skip
    seeds = script_command_seeds(["/app/tool.py"], text.get, on_path.get)
    # The first word of a call's or list's first string; not later arguments, not dict keys.
    assert sorted(s.path for s in seeds) == ["/bin/gzip", "/usr/bin/git", "/usr/bin/sort",
                                             "/usr/bin/wc"]  # fmt: skip
    assert all(s.reason.rule == "script-commands" for s in seeds)


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("ls | wc -l", ["ls", "wc"]),
        ("gzip -c f | base64", ["gzip", "base64"]),
        ("date -u && hostname", ["date", "hostname"]),
        ("test -f x || touch x; sync & wait", ["test", "touch", "sync", "wait"]),
        ("grep -c foo bar", ["grep"]),  # arguments are never programs
        ("LC_ALL=C TZ=UTC sort -r f", ["sort"]),
        ("exec env -i HOME=/ nice -n 5 gzip -9", ["exec", "env", "nice", "gzip"]),
        ("timeout -s KILL 10 curl -s x", ["timeout", "curl"]),
        ("find . -name x | xargs -n 1 stat", ["find", "xargs", "stat"]),
        ("echo `hostname` $(date -u)", ["hostname", "date", "echo"]),
        ('printf "%s" "$(tr a-z A-Z < in)"', ["tr", "printf"]),
        ("echo $((6 * 7))", ["echo"]),  # arithmetic, no command
        ("sh -c 'ls | head -1'", ["sh", "ls", "head"]),
        ("if grep -q x f; then cat f; fi", ["grep", "cat"]),
        ("for f in a b; do rm $f; done", ["rm"]),
        ("make 2>&1 | tee log", ["make", "tee"]),
        ("cat > out.txt; (cd /tmp && tar x)", ["cat", "cd", "tar"]),
        ("grep 'a|b' f", ["grep"]),  # an operator inside quotes separates nothing
        ("$CMD arg", []),
        ("", []),
    ],
)
def test_command_words_are_every_command_of_a_shell_string(command: str, words: list[str]) -> None:
    assert command_words(command) == words


def test_quoted_commands_read_every_command_of_a_command_string() -> None:
    python = (
        'os.system("ls | wc -l")\nsubprocess.run(f"gzip -c {f} | base64", shell=True)\n'
        'subprocess.run(["grep", "-c", "foo"])\nsubprocess.run(["/bin/bash", "-ec", "sort | uniq"])'
    )
    assert quoted_commands(python) == ["ls", "wc", "gzip", "base64", "grep", "/bin/bash",
                                       "sort", "uniq"]  # fmt: skip
    perl = 'my $d = `date -u && hostname`;\nsystem "uptime | cut -c1";\nmy $u = qx{id -u};\n'
    assert quoted_commands(perl, backticks=True) == ["uptime", "cut", "date", "hostname", "id"]
    assert quoted_commands(perl) == ["uptime", "cut"]  # backticks only where they run
    piped = (
        'open(my $in, "-|", "zcat", $file) or die;\nopen my $out, \'|-\', "sort -u";\n'
        'open(OUT, "| mail -s hi root");\nopen(my $ps, "ps ax |");\n'
        'open(my $fh, "<", $path);\nopen(my $log, ">>", "/var/log/x")\n'
    )
    assert quoted_commands(piped) == ["zcat", "sort", "mail", "ps"]  # not "<", ">>" or a path
    java = 'Runtime.getRuntime().exec(new String[] {"convert", in, out});\nString[] a = {"x"};\n'
    assert quoted_commands(java) == ["convert"]  # an array initializer alone is data
    ruby = "system('date -u && hostname')\nputs %x(uname -r)\n"
    assert quoted_commands(ruby, backticks=True) == ["date", "hostname", "uname"]


def test_script_commands_read_every_command_word_and_count_them_as_run() -> None:
    text = {
        "/app/tool.py": "#!/usr/bin/python3\nimport os\n"
        'os.system("ls | wc -l")\nsubprocess.run("grep -c foo f && python3 -V", shell=True)\n',
        "/app/tool.pl": "use strict;\nmy $host = `date -u && hostname`;\n",
    }
    on_path = {n: f"/usr/bin/{n}" for n in ("ls", "wc", "grep", "foo", "python3", "date",
                                             "hostname")}  # fmt: skip
    seeds = script_command_seeds(["/app/tool.py", "/app/tool.pl"], text.get, on_path.get)
    assert [s.path for s in seeds] == ["/usr/bin/ls", "/usr/bin/wc", "/usr/bin/grep",
        "/usr/bin/python3", "/usr/bin/date", "/usr/bin/hostname"]  # fmt: skip
    assert counted_as_run(seeds) == [s.path for s in seeds]
    traced = Seed("/usr/bin/foo", Reason("trace", process="x", access=("read",)))
    tree = Seed("/app", Reason("lazy", rule="app-whole"), recursive=True)
    assert counted_as_run([traced, tree]) == []


JVM = "usr/lib/jvm/java-17"
RUNTIMES = [
    M(f"{JVM}/bin/java", data=b"\x7fELF", mode=0o755),
    M(f"{JVM}/bin/jshell", data=b"\x7fELF", mode=0o755),
    M(f"{JVM}/lib/jvm.cfg", data=b"-server KNOWN"),
    M(f"{JVM}/lib/modules", data=b"jimage"),
    M(f"{JVM}/lib/tzdb.dat", data=b"tz"),
    M(f"{JVM}/lib/src.zip", data=b"src"),
    M(f"{JVM}/lib/server/libjvm.so", data=b"\x7fELF"),
    M(f"{JVM}/conf", "symlink", link="/etc/java-17"),
    M("etc/java-17/security/java.security", data=b"sec"),
    M("usr/share/zoneinfo/Europe/Paris", data=b"TZif"),
    M("usr/share/zoneinfo/right/Europe/Paris", data=b"TZif"),
    M("usr/share/perl/5.36/strict.pm", data=b"1;"),
    M("usr/lib/x86_64-linux-gnu/perl/5.36/Encode.pm", data=b"1;"),
    M("usr/share/perl5/JSON.pm", data=b"1;"),
    M("etc/nginx/nginx.conf", data=b"include sites/*;\n"),
    M("etc/nginx/sites/site", data=b"server {\n    root /var/www/site;\n}\n"),
    M("etc/nginx/mime.types", data=b"types {}"),
    M("var/www/site/index.html", data=b"<h1>"),
    M("var/www/other/index.html", data=b"<h1>"),
    M("usr/sbin/nginx", data=b"\x7fELF", mode=0o755),
    M("etc/mime.types", data=b"text/markdown\t\t\t\t\tmd markdown\n"),
    M("usr/lib/python3.11/os.py", data=b""),
    M("usr/share/tcltk/tcl8.6/init.tcl", data=b""),
    M("usr/lib/R/lib/libR.so", data=b"\x7fELF"),
]


def runtime_kept(touched: list[str], enabled: set[str] | None = None) -> set[str]:
    tree = tree_from(RUNTIMES)
    rules = RuntimeRules(tree, enabled if enabled is not None else default_enabled(),
                         reader(RUNTIMES))  # fmt: skip
    planner = Planner(tree)
    planner.add(rules.seeds(touched))
    return set(planner.kept_paths)


def test_a_jvm_that_ran_keeps_its_runtime_image_and_time_zones() -> None:
    result = runtime_kept([f"/{JVM}/lib/server/libjvm.so"])
    for path in ("lib/modules", "lib/tzdb.dat", "lib/jvm.cfg", "conf", "bin/java"):
        assert f"/{JVM}/{path}" in result
    assert "/etc/java-17/security/java.security" in result  # through the conf symlink
    assert f"/{JVM}/lib/src.zip" not in result and f"/{JVM}/bin/jshell" not in result
    assert "/usr/share/zoneinfo/Europe/Paris" in result
    assert "/usr/share/zoneinfo/right/Europe/Paris" not in result
    assert runtime_kept([f"/{JVM}/lib/server/libjvm.so"], set()) == set()


def test_runtimes_that_type_or_time_by_name_keep_the_system_tables() -> None:
    assert "/etc/mime.types" in runtime_kept(["/usr/lib/python3.11/os.py"])
    assert "/etc/mime.types" in runtime_kept([f"/{JVM}/lib/server/libjvm.so"])
    assert "/etc/mime.types" not in runtime_kept(["/usr/lib/python3.11/os.py"], {"os-release"})
    tcl = runtime_kept(["/usr/share/tcltk/tcl8.6/init.tcl"])
    assert "/usr/share/zoneinfo/Europe/Paris" in tcl and "/etc/mime.types" not in tcl
    assert "/usr/share/zoneinfo/Europe/Paris" in runtime_kept(["/usr/lib/R/lib/libR.so"])
    assert "/usr/share/zoneinfo/Europe/Paris" not in runtime_kept(["/usr/sbin/nginx"])


def test_perl_keeps_its_inc_and_nginx_its_config_and_document_root() -> None:
    whole = {"perl-core-whole", "perl-vendor"}  # off by default: perl-imports reads what runs
    perl = runtime_kept(["/usr/share/perl/5.36/strict.pm"], whole)
    assert {"/usr/lib/x86_64-linux-gnu/perl/5.36/Encode.pm", "/usr/share/perl5/JSON.pm"} <= perl
    essential = runtime_kept(["/usr/share/perl/5.36/strict.pm"])
    assert "/usr/lib/x86_64-linux-gnu/perl/5.36/Encode.pm" not in essential
    assert "/usr/share/perl/5.36/strict.pm" in essential  # perl-inc: what every Perl loads
    core = runtime_kept(["/usr/share/perl5/JSON.pm"], {"perl-core-whole"})
    assert "/usr/lib/x86_64-linux-gnu/perl/5.36/Encode.pm" in core
    assert "/usr/share/perl5/JSON.pm" not in core  # the vendor directory is perl-vendor's
    nginx = runtime_kept(["/usr/sbin/nginx"], {"web-server"})
    assert {"/etc/nginx/mime.types", "/var/www/site/index.html"} <= nginx
    assert "/var/www/other/index.html" not in nginx


APACHE = [
    M(
        "etc/apache2/apache2.conf",
        data=b"IncludeOptional mods-enabled/*.load\n<Directory /usr/share>\n</Directory>\n",
    ),
    M(
        "etc/apache2/mods-available/cgid.load",
        data=b"LoadModule cgid_module /usr/lib/apache2/modules/mod_cgid.so\n",
    ),
    M(
        "etc/apache2/mods-available/md.load",
        data=b"LoadModule md_module /usr/lib/apache2/modules/mod_md.so\n",
    ),
    M("etc/apache2/mods-enabled/cgid.load", "symlink", link="../mods-available/cgid.load"),
    M(
        "etc/apache2/sites-enabled/site.conf",
        data=b"DocumentRoot /var/www/site\n"
        b'  alias /docs/ "/srv/docs/"\n# Alias /old/ /srv/old/\nAlias /u/ /usr/share/\n'
        b"ScriptAlias /cgi-bin/ /usr/lib/cgi-bin/\n",
    ),
    M("etc/apache2/conf-available/js.conf", data=b"Alias /js/ /usr/share/javascript/\n"),
    M("usr/share/javascript/jquery.js", data=b"$"),
    M("usr/lib/apache2/modules/mod_cgid.so", data=b"\x7fELF"),
    M("usr/lib/apache2/modules/mod_md.so", data=b"\x7fELF"),
    M("usr/sbin/apache2", data=b"\x7fELF", mode=0o755),
    M("var/www/site/index.html", data=b"<h1>"),
    M("srv/docs/guide.txt", data=b"guide"),
    M("srv/old/x.txt", data=b"old"),
    M("usr/share/big/data", data=b"not served by name"),
    M("usr/lib/cgi-bin/hello.sh", data=b"#!/bin/sh\necho hi | tr a-z A-Z\n", mode=0o755),
    M("usr/lib/cgi-bin/info.pl", data=b"#!/usr/bin/env perl\nuse POSIX;\n", mode=0o755),
    M("usr/bin/sh", data=b"\x7fELF", mode=0o755),
    M("bin", "symlink", link="usr/bin"),
    M("usr/bin/tr", data=b"\x7fELF", mode=0o755),
    M("usr/bin/perl", data=b"\x7fELF", mode=0o755),
    M("usr/lib/x86_64-linux-gnu/perl/5.36/POSIX.pm", data=b"1;"),
]


def apache_kept(enabled: set[str]) -> set[str]:
    tree = tree_from(APACHE)
    rules = RuntimeRules(tree, enabled, reader(APACHE), env=["PATH=/usr/bin:/bin"])
    planner = Planner(tree)
    planner.add(rules.seeds(["/usr/sbin/apache2"]))
    return set(planner.kept_paths)


def test_apache_keeps_its_alias_directories_and_only_enabled_modules() -> None:
    served = apache_kept({"web-server"})
    assert {
        "/var/www/site/index.html",
        "/srv/docs/guide.txt",
        "/usr/lib/cgi-bin/hello.sh",
    } <= served
    assert "/srv/old/x.txt" not in served  # a commented line
    assert "/usr/share/big/data" not in served  # never a system directory, nor <Directory>
    assert "/usr/share/javascript/jquery.js" not in served  # available, never enabled
    assert "/usr/lib/apache2/modules/mod_cgid.so" in served  # enabled through mods-enabled
    assert "/usr/lib/apache2/modules/mod_md.so" not in served  # available, never loaded
    assert "/usr/bin/perl" not in served


def test_cgi_scripts_keep_their_interpreters_runtime_and_commands() -> None:
    cgi = apache_kept({"web-server", "cgi-scripts", "perl-inc"})
    assert {"/usr/bin/perl", "/usr/bin/tr", "/usr/bin/sh"} <= cgi
    assert "/usr/lib/x86_64-linux-gnu/perl/5.36/POSIX.pm" in cgi  # perl-inc fired by perl
    without = apache_kept({"web-server", "perl-inc"})
    assert "/usr/bin/perl" not in without and "/usr/bin/tr" not in without


def test_a_cgi_interpreter_counts_as_run_whatever_its_language() -> None:
    members = [
        *APACHE,
        M("usr/lib/cgi-bin/report.py", data=b"#!/usr/bin/env python3\nimport json\n", mode=0o755),
        M("usr/lib/cgi-bin/hi.rb", data=b"#!/usr/bin/ruby\nputs `hostname`\n", mode=0o755),
        M("usr/bin/python3", "symlink", link="python3.11"),
        M("usr/bin/python3.11", data=b"\x7fELF", mode=0o755),
        M("usr/bin/ruby", data=b"\x7fELF", mode=0o755),
        M("usr/bin/hostname", data=b"\x7fELF", mode=0o755),
        M("usr/lib/ruby/3.1.0/json.rb", data=b"# json"),
    ]
    tree = tree_from(members)
    rules = RuntimeRules(tree, {"web-server", "cgi-scripts", "ruby-stdlib"}, reader(members),
                         env=["PATH=/usr/bin:/bin"])  # fmt: skip
    seeds = rules.seeds(["/usr/sbin/apache2"])
    ran = counted_as_run(seeds)
    assert {"/usr/bin/python3", "/usr/bin/ruby", "/usr/bin/hostname", "/usr/bin/perl"} <= set(ran)
    planner = Planner(tree)
    planner.add(seeds)
    assert "/usr/lib/ruby/3.1.0/json.rb" in planner.kept_paths  # ruby-stdlib fired by ruby
    assert "/usr/bin/python3.11" in planner.kept_paths  # the link's target


def test_node_keeps_the_builtins_libnode_loads_from_outside_itself() -> None:
    lexer = "/usr/share/nodejs/cjs-module-lexer/lexer.js"
    members = [
        M("usr/bin/node", data=b"\x7fELF", mode=0o755),
        M(
            "usr/lib/x86_64-linux-gnu/libnode.so.108",
            data=b"\x7fELF\0" + lexer.encode() + b"\0/usr/share/nodejs/acorn/dist/acorn.js\0"
            b"NODE_SHARED_BUILTIN_UNDICI_UNDICI_PATH=/usr/share/nodejs/undici/undici-fetch.js\0"
            b"/usr/share/nodejs/absent/x.js\0",
        ),
        M("usr/lib/x86_64-linux-gnu/libnode.so", "symlink", link="libnode.so.108"),
        M(lexer[1:], data=b"lexer"),
        M("usr/share/nodejs/cjs-module-lexer/README.md", data=b"docs"),
        M("usr/share/nodejs/acorn/dist/acorn.js", data=b"acorn"),
        M("usr/share/nodejs/undici/undici-fetch.js", data=b"undici"),
        M("usr/share/nodejs/express/index.js", data=b"express"),
    ]
    tree = tree_from(members)
    planner = Planner(tree)
    planner.add(RuntimeRules(tree, {"node-builtins"}, reader(members)).seeds(["/usr/bin/node"]))
    kept = set(planner.kept_paths)
    assert {lexer, "/usr/share/nodejs/acorn/dist/acorn.js",
            "/usr/share/nodejs/undici/undici-fetch.js"} <= kept  # fmt: skip
    assert "/usr/share/nodejs/cjs-module-lexer/README.md" not in kept  # the files named only
    assert "/usr/share/nodejs/express/index.js" not in kept
    off = RuntimeRules(tree, {"runtime-shell"}, reader(members)).seeds(["/usr/bin/node"])
    assert lexer not in {s.path for s in off}


def test_python_helpers_os_release_and_the_shell_follow_links_on_the_way() -> None:
    members = [
        M("sbin", "symlink", link="usr/sbin"),
        M("usr/sbin/ldconfig", data=b"\x7fELF", mode=0o755),
        M("usr/lib/python3.11/os.py", data=b"# os"),
        M("etc/os-release", "symlink", link="../usr/lib/os-release"),
        M("usr/lib/os-release", data=b"ID=debian\n"),
        M("bin", "symlink", link="usr/bin"),
        M("usr/bin/sh", "symlink", link="dash"),
        M("usr/bin/dash", data=b"\x7fELF", mode=0o755),
    ]
    tree = tree_from(members)
    rules = RuntimeRules(tree, {"python-helpers", "os-release", "runtime-shell"}, reader(members))
    planner = Planner(tree)
    planner.add(rules.seeds(["/usr/lib/python3.11/os.py"]))
    result = set(planner.kept_paths)
    assert {"/sbin", "/usr/sbin/ldconfig"} <= result  # the link on the way, and its target
    assert {"/etc/os-release", "/usr/lib/os-release"} <= result
    assert {"/bin", "/usr/bin/sh", "/usr/bin/dash"} <= result  # for os.system, shell=True


def test_gpg_keeps_the_agent_it_starts_by_its_directory_and_a_name() -> None:
    elf = b"\x7fELF"
    members = [
        M("usr/bin/gpg", data=elf, mode=0o755),
        M("usr/bin/gpgv", data=elf, mode=0o755),
        M("usr/bin/gpg-agent", data=elf, mode=0o755),
        M("usr/bin/dirmngr", data=elf, mode=0o755),
        M("usr/lib/gnupg/scdaemon", data=elf, mode=0o755),
        M("usr/bin/sort", data=elf, mode=0o755),
    ]
    tree = tree_from(members)

    def helpers(ran: str) -> set[str]:
        planner = Planner(tree)
        planner.add(RuntimeRules(tree, {"tool-helpers"}, reader(members)).seeds([ran]))
        return set(planner.kept_paths)

    kept = helpers("/usr/bin/gpg")
    assert {"/usr/bin/gpg-agent", "/usr/bin/dirmngr", "/usr/lib/gnupg/scdaemon"} <= kept
    assert "/usr/bin/sort" not in kept
    assert "/usr/bin/gpg-agent" not in helpers("/usr/bin/gpgv")  # verifies without an agent


DPKG = [
    M(
        "var/lib/dpkg/info/git.list",
        data=b"/.\n/usr\n/usr/bin/git\n/usr/lib/git-core/git-upload-pack\n"
        b"/usr/share/git-core/templates/description\n/usr/share/doc/git/copyright\n"
        b"/usr/lib/x86_64-linux-gnu/libgit.so.1\n",
    ),
    M("var/lib/dpkg/info/zlib1g:amd64.list", data=b"/usr/lib/x86_64-linux-gnu/libz.so.1\n"),
    M("usr/bin/git", data=b"\x7fELF", mode=0o755),
    M("usr/lib/git-core/git-upload-pack", data=b"\x7fELF", mode=0o755),
    M("usr/share/git-core/templates/description", data=b"d"),
    M("usr/share/doc/git/copyright", data=b"c"),
    M("usr/lib/x86_64-linux-gnu/libgit.so.1", data=b"\x7fELF"),
    M("usr/lib/x86_64-linux-gnu/libz.so.1", data=b"\x7fELF"),
]


@pytest.mark.parametrize(
    ("level", "extra"),
    [
        ("package-data", {"/usr/share/git-core/templates/description"}),
        ("package-helpers", {"/usr/lib/git-core/git-upload-pack"}),
        (
            "package-whole",
            {
                "/usr/share/git-core/templates/description",
                "/usr/lib/git-core/git-upload-pack",
                "/usr/lib/x86_64-linux-gnu/libgit.so.1",
            },
        ),
    ],
)
def test_package_levels_keep_more_of_a_traced_files_package(level: str, extra: set[str]) -> None:
    tree = tree_from(DPKG)
    index = DpkgIndex(tree, reader(DPKG))
    assert index.owner("/usr/bin/git") == "git"
    assert index.owner("/usr/lib/x86_64-linux-gnu/libz.so.1") == "zlib1g"
    seeds = PackageRules(index, {level}).seeds(["/usr/bin/git"])
    assert {s.path for s in seeds} - {"/usr/bin/git"} == extra  # never the documentation
    assert all(s.reason.rule == level for s in seeds)
    assert PackageRules(index, set()).seeds(["/usr/bin/git"]) == []
    summary = package_summary(index, {s.path for s in seeds})
    assert summary["none"] == ["zlib1g"]
    assert summary["whole" if level == "package-whole" else "partly"] == ["git"]


def test_a_touched_perl_module_keeps_its_debian_distribution_under_inc() -> None:
    members = [
        M("var/lib/dpkg/info/libjson-perl.list",
          data=b"/usr/share/perl5/JSON.pm\n/usr/share/perl5/JSON/backportPP.pm\n"
               b"/usr/share/doc/libjson-perl/copyright\n"),
        M("usr/share/perl5/JSON.pm", data=b"1;"),
        M("usr/share/perl5/JSON/backportPP.pm", data=b"1;"),
        M("usr/share/perl5/Other.pm", data=b"1;"),
        M("usr/share/doc/libjson-perl/copyright", data=b"c"),
    ]  # fmt: skip
    index = DpkgIndex(tree_from(members), reader(members))
    seeds = PerlDistributions(index, {"perl-distribution"}).seeds(["/usr/share/perl5/JSON.pm"])
    assert {s.path for s in seeds} == {
        "/usr/share/perl5/JSON.pm",
        "/usr/share/perl5/JSON/backportPP.pm",
    }
    assert PerlDistributions(index, set()).seeds(["/usr/share/perl5/JSON.pm"]) == []


def test_level_keeps() -> None:
    assert not level_keeps("/usr/share/doc/git/copyright", {"package-whole"})
    assert level_keeps("/etc/gitconfig", {"package-data"})
    assert not level_keeps("/usr/lib/x86_64-linux-gnu/libgit.so.1", {"package-helpers"})


def test_a_touched_perl_module_keeps_its_cpan_distribution_from_its_packlist() -> None:
    site = "usr/local/share/perl/5.36.0"
    arch = "usr/local/lib/x86_64-linux-gnu/perl/5.36.0"
    members = [
        M(f"{site}/Foo/Bar.pm", data=b"1;"),
        M(f"{site}/Foo/Bar/Util.pm", data=b"1;"),
        M(f"{site}/Other.pm", data=b"1;"),
        M(f"{arch}/auto/Foo/Bar/Bar.so", data=b"\x7fELF"),
        M(
            f"{arch}/auto/Foo/Bar/.packlist",
            data=f"/{site}/Foo/Bar.pm\n/{site}/Foo/Bar/Util.pm type=file\n"
            f"/{arch}/auto/Foo/Bar/Bar.so\n/usr/local/man/man3/Foo::Bar.3pm\n".encode(),
        ),
    ]
    index = DpkgIndex(tree_from(members), reader(members))
    seeds = PerlDistributions(index, {"perl-distribution"}).seeds([f"/{site}/Foo/Bar.pm"])
    assert {s.path for s in seeds} == {
        f"/{site}/Foo/Bar.pm",
        f"/{site}/Foo/Bar/Util.pm",
        f"/{arch}/auto/Foo/Bar/Bar.so",
        f"/{arch}/auto/Foo/Bar/.packlist",
    }  # the listed manual page is not in the image: nothing to keep
    assert all(s.reason.rule == "perl-distribution" for s in seeds)
    assert PerlDistributions(index, {"perl-distribution"}).seeds([f"/{site}/Other.pm"]) == []


def test_a_jvm_that_ran_keeps_the_files_its_option_variables_name() -> None:
    env = [
        "PATH=/usr/bin",
        "JAVA_TOOL_OPTIONS=-javaagent:/opt/agent.jar=verbose -Djava.security.properties==sec.props"
        " -Xmx64m",
        "JDK_JAVA_OPTIONS='@/etc/app/java args' -Dother=1",
    ]
    assert java_option_files(env, "/srv") == [
        ("/opt/agent.jar", "JAVA_TOOL_OPTIONS"),
        ("/srv/sec.props", "JAVA_TOOL_OPTIONS"),
        ("/etc/app/java args", "JDK_JAVA_OPTIONS"),
    ]
    members = [
        *RUNTIMES,
        M("opt/agent.jar", data=b"PK"),
        M("srv/sec.props", data=b"a=b"),
        M("srv/unrelated.txt", data=b"x"),
    ]
    tree = tree_from(members)
    rules = RuntimeRules(tree, {"java-option-files"}, reader(members), env, "/srv")
    seeds = rules.seeds([f"/{JVM}/lib/server/libjvm.so"])
    assert {s.path for s in seeds} == {"/opt/agent.jar", "/srv/sec.props"}  # the argfile: absent
    assert {s.reason.rule for s in seeds} == {"java-option-files"}
    assert (
        RuntimeRules(tree, set(), reader(members), env, "/srv").seeds(
            [f"/{JVM}/lib/server/libjvm.so"]
        )
        == []
    )


def test_a_program_that_ran_keeps_the_var_lib_entries_of_its_package() -> None:
    members = [
        M(
            "var/lib/dpkg/info/nginx-common.list",
            data=b"/usr/sbin/nginx\n/var/lib/nginx\n/var/lib/nginx/body\n/var/log/nginx\n",
        ),
        M("var/lib/dpkg/info/php-common.list", data=b"/var/lib/php\n/var/lib/php/sessions\n"),
        M("usr/sbin/nginx", data=b"\x7fELF", mode=0o755),
        M("var/lib/nginx/body", "dir", mode=0o700),
        M("var/lib/php/sessions", "dir", mode=0o1733),
    ]
    index = DpkgIndex(tree_from(members), reader(members))
    seeds = PackageStateDirs(index, {"skeleton-var-lib"}).seeds(["/usr/sbin/nginx"])
    assert {s.path for s in seeds} == {"/var/lib/nginx", "/var/lib/nginx/body"}
    assert all(not s.recursive and s.reason.rule == "skeleton-var-lib" for s in seeds)
    assert PackageStateDirs(index, set()).seeds(["/usr/sbin/nginx"]) == []


def test_a_compiled_programs_packed_string_literals_name_files_and_data_dirs() -> None:
    members = [
        M("bin", "symlink", link="usr/bin"),
        M("usr/bin/echo", data=b"\x7fELF", mode=0o755),
        M("usr/bin/ec", data=b"\x7fELF", mode=0o755),
        M("usr/share/zoneinfo/Europe/Paris", data=b"TZif"),
        M("usr/share/zoneinfo/right/Europe/Paris", data=b"TZif"),
        M("etc/ssl/certs/ca-certificates.crt", data=b"PEM"),
        M("etc/hosts", data=b"127.0.0.1 localhost"),
        M("usr/local/bin/goapp", data=b"\x7fELF", mode=0o755),
        M("usr/share/other/data.txt", data=b"x"),
    ]
    tree = tree_from(members)
    data = (
        "\x7fELF\x00span/usr/share/zoneinfo/2006-01-02/bin/echo/dev/null2001::/32"
        "/etc/ssl/certs/ca-certificates.crtunknown/etc/hosts/usr/local/bin/goapp"
    )
    seeds = binary_named_seeds(tree, "/usr/local/bin/goapp", data)
    assert {(s.path, s.recursive) for s in seeds} == {
        ("/usr/share/zoneinfo", True),
        ("/bin/echo", False),  # the longest name the text continues with, not /bin/ec
        ("/etc/ssl/certs/ca-certificates.crt", False),
    }
    result = kept(members, seeds)
    assert "/usr/share/zoneinfo/Europe/Paris" in result and "/usr/bin/echo" in result
    assert "/usr/share/zoneinfo/right/Europe/Paris" not in result
    assert {s.reason.rule for s in seeds} == {"binary-named-paths"}


def test_absolute_paths_are_found_as_the_lookbehind_pattern_finds_them() -> None:
    """The hand-applied lookbehind gives exactly the matches of the pattern with it."""
    with_lookbehind = re.compile(r"(?<![\w.:/-])(/(?:[\w.+-]+/)*[\w.+-]+)")
    rng = random.Random(15)
    alphabet = "ab/.+-: \x00é1_"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert absolute_paths(text) == with_lookbehind.findall(text), text
    sample = 'run("/usr/bin/git") x/usr/lib http://h/p a+/b /bin/sh\x00/etc/x.conf'
    assert absolute_paths(sample) == ["/usr/bin/git", "/b", "/bin/sh", "/etc/x.conf"]
