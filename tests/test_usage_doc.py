"""docs/usage.md and the command line cannot drift apart: every command of `cxr` is documented in the command
block of docs/usage.md, and every command and option written there exists."""

import argparse
import re

from cxr.cli import parser
from cxr.testing import ROOT

USAGE = ROOT / "docs" / "usage.md"


def _real() -> dict[str, set[str]]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for a in p._actions for o in a.option_strings if o.startswith("--")}
            for name, p in sub.choices.items()}


def _documented() -> dict[str, set[str]]:
    """{command: options} from the first sh block of docs/usage.md (indented lines continue a command)."""
    block = USAGE.read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    found, current = {}, None
    for line in block.splitlines():
        if line.startswith("cxr "):
            current = line.split()[1]
            found.setdefault(current, set())
        if current is not None:
            found[current] |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line.split("#", 1)[0]))
    return found


def test_docs_usage_md_documents_every_command_and_only_options_that_exist():
    real, documented = _real(), _documented()
    assert set(documented) == set(real), (f"undocumented: {sorted(set(real) - set(documented))}; "
                                          f"not a command: {sorted(set(documented) - set(real))}")
    unknown = {command: sorted(options - real[command]) for command, options in documented.items()
               if options - real[command]}
    assert not unknown, f"docs/usage.md names options that do not exist: {unknown}"
