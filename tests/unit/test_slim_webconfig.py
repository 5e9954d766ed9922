"""WebConfig: what nginx's and httpd's enabled configuration names, on fabricated trees."""

from __future__ import annotations

from ocislim.slim.webconfig import WebConfig
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from


def _config(members: list[M]) -> WebConfig:
    return WebConfig(tree_from(members), reader(members))


def test_only_enabled_files_count_and_relative_modules_start_at_server_root() -> None:
    members = [
        M("etc/httpd/conf/httpd.conf", data=b'ServerRoot "/etc/httpd"\nInclude conf.d/*.conf\n'),
        M("etc/httpd/conf.d/mods.conf", data=b"loadmodule cgid_module modules/mod_cgid.so\n"),
        M(
            "etc/httpd/mods-available/md.load",
            data=b"LoadModule md_module modules/mod_md.so\nDocumentRoot /srv/unused\n",
        ),
        M("etc/httpd/modules/mod_cgid.so", data=b"\x7fELF"),
        M("etc/httpd/modules/mod_md.so", data=b"\x7fELF"),
        M("srv/unused/index.html", data=b"x"),
    ]
    config = _config(members)
    assert config.httpd_modules() == ["/etc/httpd/modules/mod_cgid.so"]
    assert config.served_dirs() == []


def test_served_and_cgi_directories_exist_and_are_never_system_directories() -> None:
    members = [
        M(
            "etc/apache2/sites-enabled/site.conf",
            data=b"DocumentRoot /srv/site\n"
            b'ScriptAlias /cgi-bin/ "/srv/cgi/"\n'
            b"Alias /docs /usr/share\n"
            b"Alias /gone /srv/missing\n",
        ),
        M(
            "etc/nginx/conf.d/app.conf",
            data=b"server { listen 80; root /var/www/app; }\n# root /srv/commented\n",
        ),
        M("srv/site/index.html", data=b"x"),
        M("srv/cgi/run.pl", data=b"#!/usr/bin/perl\n", mode=0o755),
        M("var/www/app/index.html", data=b"x"),
        M("usr/share/doc/readme", data=b"x"),
        M("srv/commented/index.html", data=b"x"),
    ]
    config = _config(members)
    assert config.served_dirs() == ["/srv/cgi", "/srv/site", "/var/www/app"]
    assert config.cgi_dirs() == ["/srv/cgi"]
    assert config.httpd_modules() == []
