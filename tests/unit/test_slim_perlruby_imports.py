"""Perl's and Ruby's import readers on fabricated layouts: parsing, resolution, families,
gems, hostile input, and the rules switched off."""

from __future__ import annotations

from ocislim.slim.keeprules import default_enabled
from ocislim.slim.langrules import LangRules
from ocislim.slim.perlimports import MAX_TEXT, PerlImports, code_of, perl_imports, safe_relative
from ocislim.slim.plan import Planner, Reason, Seed
from ocislim.slim.rubyimports import RubyImports, ruby_requires, safe_feature
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from

ARCH = "usr/lib/x86_64-linux-gnu/perl/5.36"
CORE = "usr/share/perl/5.36"
VENDOR = "usr/share/perl5"
VENDOR_ARCH = "usr/lib/x86_64-linux-gnu/perl5/5.36"
BASE = "usr/lib/x86_64-linux-gnu/perl-base"

TOOL = b"""#!/usr/bin/perl
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use parent -norequire, 'Not::Loaded';
use base qw(Local::Base);
# use Commented::Out;
my $mode = shift;
if ($mode eq 'dt') { require DateTime; }
elsif ($mode eq 'enc') { eval { require Encode; 1 } or die; }
require "local/helper.pl";
print "use Not::A::Statement here\\n" if 0;
=pod

use In::Pod;

=cut
__END__
use After::End;
"""


def perl_tree() -> list[M]:
    return [
        M("usr/bin/perl", data=b"\x7fELF", mode=0o755),
        M(f"{BASE}/strict.pm", data=b"package strict; 1;"),
        M(f"{BASE}/warnings.pm", data=b"package warnings; 1;"),
        M(f"{BASE}/warnings/register.pm", data=b"1;"),
        M(f"{BASE}/parent.pm", data=b"1;"),
        M(f"{BASE}/base.pm", data=b"1;"),
        M(f"{BASE}/lib.pm", data=b"1;"),
        M(f"{CORE}/FindBin.pm", data=b"use Carp; 1;"),
        M(f"{BASE}/Carp.pm", data=b"1;"),
        M(f"{BASE}/Carp/Heavy.pm", data=b"1;"),
        M(f"{ARCH}/Encode.pm", data=b"package Encode; use Encode::Alias; 1;"),
        M(f"{ARCH}/Encode/Alias.pm", data=b"1;"),
        M(f"{ARCH}/Encode/JP.pm", data=b"1;"),  # loaded by encoding name
        M(f"{ARCH}/auto/Encode/Encode.so", data=b"\x7fELF"),
        M(f"{ARCH}/auto/Encode/JP/JP.so", data=b"\x7fELF"),
        M(f"{ARCH}/POSIX.pm", data=b"1;"),  # imported by nobody
        M(f"{VENDOR_ARCH}/DateTime.pm", data=b"use DateTime::Locale;\nuse DateTime::TimeZone;\n"),
        M(f"{VENDOR_ARCH}/DateTime/Duration.pm", data=b"1;"),
        M(f"{VENDOR_ARCH}/auto/DateTime/DateTime.so", data=b"\x7fELF"),
        M(f"{VENDOR}/DateTime/Locale.pm", data=b"1;"),
        M(f"{VENDOR}/DateTime/Locale/fr.pm", data=b"1;"),
        M(f"{VENDOR}/DateTime/Locale/fr.pod", data=b"=pod"),
        M(f"{VENDOR}/DateTime/TimeZone.pm", data=b"1;"),
        M(f"{VENDOR}/DateTime/TimeZone/Asia/Tokyo.pm", data=b"1;"),
        M(f"{VENDOR}/JSON.pm", data=b"1;"),  # imported by nobody
        M(f"{VENDOR}/In/Pod.pm", data=b"1;"),
        M(f"{VENDOR}/After/End.pm", data=b"1;"),
        M(f"{VENDOR}/Commented/Out.pm", data=b"1;"),
        M(f"{VENDOR}/Not/Loaded.pm", data=b"1;"),
        M("app/bin/tool.pl", data=TOOL, mode=0o755),
        M("app/lib/Local/Base.pm", data=b"package Local::Base; use POSIX (); 1;"),
        M("app/lib/local/helper.pl", data=b"1;"),
    ]


def perl_kept(members: list[M], scripts: list[str], enabled: set[str] | None = None) -> set[str]:
    tree = tree_from(members)
    rules = LangRules(tree, reader(members), default_enabled() if enabled is None else enabled)
    planner = Planner(tree)
    planner.add(rules.imported(scripts))
    return set(planner.kept_paths)


def test_perl_statements_are_read_and_pod_comments_and_end_skipped() -> None:
    source = perl_imports(TOOL.decode())
    assert list(source.modules) == [
        "strict.pm",
        "warnings.pm",
        "FindBin.pm",
        "parent.pm",
        "Local/Base.pm",
        "base.pm",
        "DateTime.pm",
        "Encode.pm",
        "local/helper.pl",
    ]
    assert source.libs == ["./../lib"]
    assert "Not/A/Statement.pm" not in source.modules  # inside a string, mid-sentence
    assert "use In::Pod" not in code_of(TOOL.decode())


def test_use_parent_lists_and_literal_requires() -> None:
    source = perl_imports("use parent qw(A::B C);\nuse base 'D', \"E::F\";\nrequire 'G/H.pm';\n")
    assert {"A/B.pm", "C.pm", "D.pm", "E/F.pm", "G/H.pm", "parent.pm", "base.pm"} == set(
        source.modules
    )
    assert perl_imports('require "$dir/X.pm";').modules == {}  # interpolated: not literal


def test_named_characters_load_charnames_and_do_files_are_found_in_inc() -> None:
    assert "_charnames.pm" in perl_imports('print "\\N{GREEK SMALL LETTER ALPHA}";').modules
    assert perl_imports('print "\\N{U+3B1}";').modules == {}  # by number: no names read
    assert perl_imports('my $t = do "unicore/Name.pl";').modules == {
        "unicore/Name.pl": "unicore/Name.pl"
    }
    assert perl_imports("do { 1 };").modules == {}


def test_modules_given_to_loader_functions_by_name_are_read() -> None:
    code = (
        "require_module('Template::Tiny');\n"  # Dancer2's error page
        'my $o = use_module("Foo::Bar")->new;\n'
        "Class::Load::load_class( 'Moo::Role' );\n"
        "load 'Data::Dumper';\n"
        "$loader->load('Not::Loaded');\n"  # a method of some object
        "require_module($name);\n"  # computed: nothing to read
    )
    assert set(perl_imports(code).modules) == {
        "Template/Tiny.pm",
        "Foo/Bar.pm",
        "Moo/Role.pm",
        "Data/Dumper.pm",
    }


def test_moose_sugar_and_dbi_data_sources_load_by_name() -> None:
    code = (
        "package App::Model;\nuse Moo;\n"
        "extends 'App::Base';\n"
        "with 'App::Role::Logs', qw(App::Role::Cache);\n"
        'my $dbh = DBI->connect("dbi:SQLite:dbname=/data/app.db", "", "");\n'
        "my $dsn = 'DBI:Pg:dbname=app;host=db';\n"
        'print "with love, extends nothing";\n'  # words in a string are no statement
        "my $x = with_retry(3);\n"
    )
    assert set(perl_imports(code).modules) == {
        "Moo.pm",
        "App/Base.pm",
        "App/Role/Logs.pm",
        "App/Role/Cache.pm",
        "DBD/SQLite.pm",
        "DBD/Pg.pm",
    }


def test_unicore_is_kept_with_charnames_or_unicode_ucd_only() -> None:
    unicore = [
        M(f"{CORE}/_charnames.pm", data=b'use unicore::Name;\nmy $t = do "unicore/Name.pl";\n'),
        M(f"{CORE}/charnames.pm", data=b"use _charnames ();\n1;"),
        M(f"{CORE}/Unicode/UCD.pm", data=b'require "unicore/UCD.pl";\n1;'),
        M(f"{CORE}/unicore/Name.pm", data=b"1;"),
        M(f"{CORE}/unicore/Name.pl", data=b"1;"),
        M(f"{CORE}/unicore/UCD.pl", data=b"1;"),
        M(f"{CORE}/unicore/To/Gc.pl", data=b"1;"),  # read by a computed name
        M(f"{BASE}/unicore/lib/Perl/Word.pl", data=b"1;"),
    ]
    members = [*perl_tree(), *unicore]
    members.append(M("app/names.pl", data=b'print "\\N{BLACK STAR}\\n";\n'))
    members.append(M("app/ucd.pl", data=b"use Unicode::UCD qw(charinfo);\n"))
    plain = perl_kept(members, ["/app/bin/tool.pl"])
    assert not any("/unicore/" in p or p.endswith("charnames.pm") for p in plain)
    names = perl_kept(members, ["/app/names.pl"])
    assert {
        f"/{CORE}/_charnames.pm",
        f"/{CORE}/unicore/Name.pm",
        f"/{CORE}/unicore/Name.pl",
    } <= names
    assert f"/{CORE}/unicore/To/Gc.pl" not in names
    ucd = perl_kept(members, ["/app/ucd.pl"])
    assert {f"/{CORE}/unicore/To/Gc.pl", f"/{BASE}/unicore/lib/Perl/Word.pl"} <= ucd


def test_a_perl_script_keeps_its_closure_with_families_only() -> None:
    kept = perl_kept(perl_tree(), ["/app/bin/tool.pl"])
    for path in (
        f"/{ARCH}/Encode.pm",
        f"/{ARCH}/Encode/JP.pm",  # the family: Encode/ below the same @INC directory
        f"/{ARCH}/auto/Encode/JP/JP.so",  # and auto/Encode/
        f"/{VENDOR_ARCH}/DateTime.pm",
        f"/{VENDOR_ARCH}/auto/DateTime/DateTime.so",
        f"/{VENDOR}/DateTime/Locale/fr.pm",  # read transitively through DateTime.pm
        f"/{VENDOR}/DateTime/TimeZone/Asia/Tokyo.pm",
        f"/{BASE}/Carp/Heavy.pm",  # FindBin uses Carp
        f"/{ARCH}/POSIX.pm",  # through use lib and use base: Local::Base uses POSIX
        "/app/lib/local/helper.pl",
    ):
        assert path in kept, path
    for path in (
        f"/{VENDOR}/JSON.pm",
        f"/{VENDOR}/In/Pod.pm",
        f"/{VENDOR}/After/End.pm",
        f"/{VENDOR}/Commented/Out.pm",
        f"/{VENDOR}/Not/Loaded.pm",  # use parent -norequire
        f"/{VENDOR}/DateTime/Locale/fr.pod",
    ):
        assert path not in kept, path


def test_perl_reasons_name_the_module_and_who_imported_it() -> None:
    members = perl_tree()
    tree = tree_from(members)
    seeds = LangRules(tree, reader(members), default_enabled()).imported(["/app/bin/tool.pl"])
    (dt,) = [s for s in seeds if s.path == f"/{VENDOR_ARCH}/DateTime.pm"]
    assert dt.reason.rule == "perl-imports" and dt.reason.by == "/app/bin/tool.pl"
    assert "DateTime" in dt.reason.detail and "/app/bin/tool.pl" in dt.reason.detail
    (locale,) = [s for s in seeds if s.path == f"/{VENDOR}/DateTime/Locale.pm"]
    assert f"imported by /{VENDOR_ARCH}/DateTime.pm, from /app/bin/tool.pl" in locale.reason.detail


def test_a_touched_module_keeps_its_family_and_its_imports() -> None:
    members = perl_tree()
    tree = tree_from(members)
    rules = LangRules(tree, reader(members), default_enabled())
    planner = Planner(tree)
    planner.add(rules.seeds([f"/{ARCH}/Encode.pm"]))
    kept = set(planner.kept_paths)
    assert {f"/{ARCH}/Encode/JP.pm", f"/{ARCH}/auto/Encode/Encode.so"} <= kept
    assert f"/{VENDOR}/JSON.pm" not in kept


def test_perl_hostile_input() -> None:
    # A cycle of use between two modules, a require out of @INC, a NUL, a huge file.
    members = [
        M(f"{VENDOR}/A.pm", data=b"package A; use B; 1;"),
        M(f"{VENDOR}/B.pm", data=b"package B; use A; 1;"),
        M(f"{VENDOR}/Huge.pm", data=b"use Hidden;\n" + b"#" * (MAX_TEXT + 1)),
        M(f"{VENDOR}/Hidden.pm", data=b"1;"),
        M("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
        M(
            "app/x.pl",
            data=b'use A;\nuse Huge;\nrequire "../../etc/passwd";\nrequire "/etc/passwd";\n'
            b'require "a\x00b.pm";\nrequire "Foo/../../x.pm";\n',
        ),
    ]
    kept = perl_kept(members, ["/app/x.pl"])
    assert {f"/{VENDOR}/A.pm", f"/{VENDOR}/B.pm", f"/{VENDOR}/Huge.pm"} <= kept
    assert f"/{VENDOR}/Hidden.pm" not in kept  # the huge file is kept, not read
    assert "/etc/passwd" not in kept
    for bad in ("../../etc/passwd", "/etc/passwd", "a\x00b.pm", "Foo/../../x.pm", ""):
        assert safe_relative(bad) is None
    assert safe_relative("Foo/Bar.pm") == "Foo/Bar.pm"
    assert perl_imports("use Foo::..::Bar;").modules == {}


def test_perl_imports_can_be_switched_off() -> None:
    enabled = set(default_enabled()) - {"perl-imports"}
    assert perl_kept(perl_tree(), ["/app/bin/tool.pl"], enabled) == set()
    tree = tree_from(perl_tree())
    assert LangRules(tree, reader(perl_tree()), enabled).seeds([f"/{ARCH}/Encode.pm"]) == []


def test_cgi_scripts_with_a_perl_line_are_read() -> None:
    members = [*perl_tree(), M("srv/cgi/info.cgi", data=b"#!/usr/bin/perl\nuse Encode;\n")]
    assert f"/{ARCH}/Encode/JP.pm" in perl_kept(members, ["/srv/cgi/info.cgi"])
    shell = [*perl_tree(), M("srv/cgi/info.cgi", data=b"#!/bin/sh\n# use Encode;\nuse Encode\n")]
    assert perl_kept(shell, ["/srv/cgi/info.cgi"]) == set()


def test_perl_inc_follows_the_image_layout() -> None:
    members = [*perl_tree(), M("usr/local/lib/perl5/5.38.0/x86_64-linux-gnu/Config.pm", data=b"")]
    imports = PerlImports(tree_from(members), reader(members))
    assert imports.inc() == [
        f"/{VENDOR_ARCH}",
        f"/{VENDOR}",
        f"/{BASE}",
        f"/{ARCH}",
        f"/{CORE}",
        "/usr/local/lib/perl5/5.38.0/x86_64-linux-gnu",
        "/usr/local/lib/perl5/5.38.0",
    ]


# -- Ruby ---------------------------------------------------------------------------

RUBY = "usr/lib/ruby/3.1.0"
VENDOR_RUBY = "usr/lib/ruby/vendor_ruby"
INTEGRATION = "usr/share/rubygems-integration/all"
BUNDLE = "usr/local/bundle"

APP = b"""require 'sinatra/base'
require "json"
require_relative 'lib/helpers'
autoload :Report, 'report_gem'
# require 'commented_gem'
=begin
require 'doc_gem'
=end
get('/tz') { require 'tzinfo'; TZInfo::Timezone.get('Asia/Tokyo') }
require "#{dir}/interpolated"
__END__
require 'after_end_gem'
"""


def ruby_tree() -> list[M]:
    return [
        M("usr/bin/ruby3.1", data=b"\x7fELF", mode=0o755),
        M(f"{RUBY}/json.rb", data=b"require 'json/common'\n"),
        M(f"{RUBY}/json/common.rb", data=b"# common"),
        M(f"{RUBY}/json/ext.rb", data=b"# ext"),
        M(f"{RUBY}/net/http.rb", data=b"# net"),
        M(f"{INTEGRATION}/gems/sinatra-3.0.5/lib/sinatra/base.rb", data=b"require 'rack'\n"),
        M(f"{INTEGRATION}/gems/sinatra-3.0.5/lib/sinatra/main.rb", data=b"# main"),
        M(f"{INTEGRATION}/gems/sinatra-3.0.5/test/helper.rb", data=b"require 'minitest'\n"),
        M(f"{INTEGRATION}/specifications/sinatra-3.0.5.gemspec", data=b"spec"),
        M(f"{INTEGRATION}/gems/rack-2.2.22/lib/rack.rb", data=b"# rack"),
        M(f"{INTEGRATION}/specifications/rack-2.2.22.gemspec", data=b"spec"),
        M(f"{INTEGRATION}/gems/minitest-5.15.0/lib/minitest.rb", data=b"# minitest"),
        M(f"{INTEGRATION}/specifications/minitest-5.15.0.gemspec", data=b"spec"),
        M(f"{BUNDLE}/gems/tzinfo-2.0.4/lib/tzinfo.rb", data=b"# old"),
        M(f"{BUNDLE}/gems/tzinfo-2.0.10/lib/tzinfo.rb", data=b"require 'tzinfo/data'\n"),
        M(f"{BUNDLE}/gems/tzinfo-2.0.10/lib/tzinfo/zone.rb", data=b"# zone"),
        M(f"{BUNDLE}/specifications/tzinfo-2.0.10.gemspec", data=b"spec"),
        M(f"{BUNDLE}/specifications/tzinfo-2.0.4.gemspec", data=b"spec"),
        M(f"{BUNDLE}/gems/tzinfo-data-1.2024/lib/tzinfo/data.rb", data=b"# data"),
        M(f"{BUNDLE}/specifications/tzinfo-data-1.2024.gemspec", data=b"spec"),
        M(f"{BUNDLE}/gems/report_gem-1.0/lib/report_gem.rb", data=b"# report"),
        M(f"{BUNDLE}/specifications/report_gem-1.0.gemspec", data=b"spec"),
        M(f"{BUNDLE}/gems/nokogiri-1.15/lib/nokogiri.rb", data=b"require 'nokogiri/nokogiri'"),
        M(f"{BUNDLE}/specifications/nokogiri-1.15.gemspec", data=b"spec"),
        M(f"{BUNDLE}/extensions/x86_64-linux/3.1.0/nokogiri-1.15/nokogiri/nokogiri.so", data=b"E"),
        M(f"{BUNDLE}/gems/commented_gem-1/lib/commented_gem.rb", data=b"#"),
        M(f"{BUNDLE}/gems/doc_gem-1/lib/doc_gem.rb", data=b"#"),
        M(f"{BUNDLE}/gems/after_end_gem-1/lib/after_end_gem.rb", data=b"#"),
        M(f"{VENDOR_RUBY}/unused.rb", data=b"# unused"),
        M("app/app.rb", data=APP),
        M("app/lib/helpers.rb", data=b"require 'nokogiri'\n"),
    ]


def ruby_kept(members: list[M], scripts: list[str], enabled: set[str] | None = None) -> set[str]:
    tree = tree_from(members)
    rules = LangRules(tree, reader(members), default_enabled() if enabled is None else enabled)
    planner = Planner(tree)
    planner.add(rules.imported(scripts))
    return set(planner.kept_paths)


def test_ruby_requires_are_literal_only_and_skip_docs_comments_and_end() -> None:
    assert ruby_requires(APP.decode()) == [
        ("require", "sinatra/base"),
        ("require", "json"),
        ("require_relative", "lib/helpers"),
        ("require", "report_gem"),
        ("require", "tzinfo"),
    ]


def test_a_ruby_script_keeps_required_gems_whole_with_specifications() -> None:
    kept = ruby_kept(ruby_tree(), ["/app/app.rb"])
    for path in (
        f"/{INTEGRATION}/gems/sinatra-3.0.5/lib/sinatra/main.rb",  # the gem whole
        f"/{INTEGRATION}/specifications/sinatra-3.0.5.gemspec",
        f"/{INTEGRATION}/gems/rack-2.2.22/lib/rack.rb",  # required by sinatra/base
        f"/{BUNDLE}/gems/tzinfo-2.0.10/lib/tzinfo/zone.rb",  # required inside a route
        f"/{BUNDLE}/specifications/tzinfo-2.0.10.gemspec",
        f"/{BUNDLE}/gems/tzinfo-data-1.2024/lib/tzinfo/data.rb",  # the newest tzinfo's
        f"/{BUNDLE}/gems/report_gem-1.0/lib/report_gem.rb",  # autoload
        f"/{BUNDLE}/gems/nokogiri-1.15/lib/nokogiri.rb",  # through require_relative
        f"/{BUNDLE}/extensions/x86_64-linux/3.1.0/nokogiri-1.15/nokogiri/nokogiri.so",
        "/app/lib/helpers.rb",
        f"/{RUBY}/json.rb",
        f"/{RUBY}/json/ext.rb",  # the family: json/ beside json.rb
    ):
        assert path in kept, path
    for path in (
        f"/{BUNDLE}/gems/tzinfo-2.0.4/lib/tzinfo.rb",  # an older version
        f"/{INTEGRATION}/gems/minitest-5.15.0/lib/minitest.rb",  # only sinatra's tests
        f"/{BUNDLE}/gems/commented_gem-1/lib/commented_gem.rb",
        f"/{BUNDLE}/gems/doc_gem-1/lib/doc_gem.rb",
        f"/{BUNDLE}/gems/after_end_gem-1/lib/after_end_gem.rb",
        f"/{VENDOR_RUBY}/unused.rb",
        f"/{RUBY}/net/http.rb",
    ):
        assert path not in kept, path


def test_ruby_reasons_name_the_feature_and_who_required_it() -> None:
    members = ruby_tree()
    seeds = LangRules(tree_from(members), reader(members), default_enabled()).imported(
        ["/app/app.rb"]
    )
    (tz,) = [s for s in seeds if s.path == f"/{BUNDLE}/gems/tzinfo-2.0.10"]
    assert tz.reason.rule == "ruby-imports" and tz.reason.by == "/app/app.rb"
    assert "'tzinfo'" in tz.reason.detail and "/app/app.rb" in tz.reason.detail


def test_ruby_hostile_input() -> None:
    members = [
        *ruby_tree(),
        M("app/a.rb", data=b"require_relative 'b'\nrequire '../../etc/passwd'\n"),
        M("app/b.rb", data=b"require_relative 'a'\nrequire_relative '../../etc/passwd'\n"),
        M("app/c.rb", data=b"require 'x\x00y'\nrequire '/etc/passwd'\n"),
        M("app/huge.rb", data=b"require 'tzinfo'\n" + b"#" * (MAX_TEXT + 1)),
        M("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
        M("etc/passwd.rb", data=b"# not reachable by a safe feature"),
    ]
    kept = ruby_kept(members, ["/app/a.rb", "/app/c.rb", "/app/huge.rb"])
    assert {"/app/a.rb", "/app/b.rb"} <= kept  # the cycle ends
    assert "/etc/passwd" not in kept
    assert f"/{BUNDLE}/gems/tzinfo-2.0.10/lib/tzinfo.rb" not in kept  # huge: not read
    for bad in ("../../etc/passwd", "/etc/passwd", "a/./b", "a//b", ""):
        assert safe_feature(bad) is None


def test_a_touched_ruby_file_has_its_requires_read() -> None:
    members = ruby_tree()
    tree = tree_from(members)
    rules = LangRules(tree, reader(members), default_enabled())
    planner = Planner(tree)
    touched = f"/{INTEGRATION}/gems/sinatra-3.0.5/lib/sinatra/base.rb"
    planner.add([Seed(touched, Reason("trace", process="ruby", access=("read",)))])
    planner.add(rules.seeds([touched]))
    kept = set(planner.kept_paths)
    assert f"/{INTEGRATION}/gems/rack-2.2.22/lib/rack.rb" in kept
    assert f"/{INTEGRATION}/gems/minitest-5.15.0/lib/minitest.rb" not in kept


def test_ruby_imports_can_be_switched_off() -> None:
    enabled = set(default_enabled()) - {"ruby-imports"}
    assert ruby_kept(ruby_tree(), ["/app/app.rb"], enabled) == set()
    assert "ruby-imports" in default_enabled() and "perl-imports" in default_enabled()


def test_a_gem_keeps_its_runtime_dependencies_found_by_their_require_paths() -> None:
    spec = (
        b's.require_paths = ["lib".freeze]\ns.add_runtime_dependency(%q<concurrent-ruby>.freeze)\n'
    )
    members = [
        *ruby_tree(),
        M(f"{INTEGRATION}/gems/tz-2.0/lib/tz.rb", data=b"require 'concurrent'\n"),
        M(f"{INTEGRATION}/specifications/tz-2.0.gemspec", data=spec),
        M(f"{INTEGRATION}/gems/concurrent-ruby-1.1/lib/concurrent-ruby/concurrent.rb", data=b"#"),
        M(
            f"{INTEGRATION}/specifications/concurrent-ruby-1.1.gemspec",
            data=b's.require_paths = ["lib/concurrent-ruby".freeze]\n',
        ),
        M("app/tz.rb", data=b"require 'tz'\n"),
    ]
    kept = ruby_kept(members, ["/app/tz.rb"])
    assert f"/{INTEGRATION}/gems/concurrent-ruby-1.1/lib/concurrent-ruby/concurrent.rb" in kept
    assert f"/{INTEGRATION}/specifications/concurrent-ruby-1.1.gemspec" in kept
    imports = RubyImports(tree_from(members), reader(members))
    seeds = imports.script("/app/tz.rb")
    assert any("a dependency of tz-2.0" in s.reason.detail for s in seeds)


def test_gems_are_found_in_every_home_newest_first() -> None:
    imports = RubyImports(tree_from(ruby_tree()), reader(ruby_tree()))
    names = [(g.home, g.name) for g in imports.gems() if g.name.startswith("tzinfo-2")]
    assert names == [(f"/{BUNDLE}", "tzinfo-2.0.10"), (f"/{BUNDLE}", "tzinfo-2.0.4")]
    assert imports.gem_of(f"/{BUNDLE}/gems/tzinfo-2.0.4/lib/tzinfo.rb") is not None
