"""Every keep rule's name, description and default, in one table.

The rule tables live with the code that applies them: language rules
(:mod:`ocislim.slim.langrules`), application and written places
(:mod:`ocislim.slim.apprules`), runtimes (:mod:`ocislim.slim.runtimerules`), the JVM's
class path (:mod:`ocislim.slim.javapaths`), PHP's libraries
(:mod:`ocislim.slim.phplibs`), plugin and data directories (:mod:`ocislim.slim.plugindirs`,
:mod:`ocislim.slim.datadirs`), programs' other names (:mod:`ocislim.slim.aliases`)
and package levels (:mod:`ocislim.slim.pkgrules`).
``--enable-rule`` and ``--disable-rule`` take these names (and the ELF lazy-rule
names).
"""

from __future__ import annotations

from ocislim.slim.aliases import ALIAS_RULES
from ocislim.slim.apprules import APP_RULES
from ocislim.slim.confpaths import CONF_PATH_RULES
from ocislim.slim.datadirs import DATA_DIR_RULES
from ocislim.slim.javapaths import JAVA_PATH_RULES
from ocislim.slim.langrules import LANG_RULES, LangRule
from ocislim.slim.namedprograms import NAMED_PROGRAM_RULES
from ocislim.slim.nestedscripts import NESTED_RULES
from ocislim.slim.phplibs import PHP_LIB_RULES
from ocislim.slim.pkgrules import PKG_RULES
from ocislim.slim.plugindirs import PLUGIN_DIR_RULES
from ocislim.slim.runtimerules import RUNTIME_RULES

KEEP_RULES: tuple[LangRule, ...] = (
    *LANG_RULES,
    *APP_RULES,
    *RUNTIME_RULES,
    *JAVA_PATH_RULES,
    *CONF_PATH_RULES,
    *PLUGIN_DIR_RULES,
    *DATA_DIR_RULES,
    *ALIAS_RULES,
    *NESTED_RULES,
    *NAMED_PROGRAM_RULES,
    *PHP_LIB_RULES,
    *PKG_RULES,
)


def rule_names() -> tuple[str, ...]:
    return tuple(r.name for r in KEEP_RULES)


def default_enabled() -> frozenset[str]:
    return frozenset(r.name for r in KEEP_RULES if r.default)
