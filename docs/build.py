"""Build the documentation offline: ``python docs/build.py [OUT]`` (``build/docs``).

The pages beside this file, the README (whose sections the guide pages include), the
figures and the examples are copied into ``OUT/src`` with three generated pages: the
command-line reference (every subcommand's ``--help``), the API reference (every public
module's names, each documented once) and the gallery (each example's docstring, figures
and code). Sphinx then writes ``OUT/html`` with every warning an error and every
cross-reference checked; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import pkgutil
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIGURE = re.compile(r"figures/([\w.-]+\.(?:png|gif))")
ROLE = re.compile(r":(\w+):`")  # a reST role in a docstring, written as a MyST role


def cli_page() -> str:
    """Every subcommand's ``--help``, as printed in a terminal 88 columns wide."""
    os.environ["COLUMNS"] = "88"
    from landscape.cli import build_parser

    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = ["# Command line\n", "```text", parser.format_help().rstrip(), "```\n"]
    for name, sub in commands.choices.items():
        parts += [f"## landscape {name}\n", "```text", sub.format_help().rstrip(), "```\n"]
    return "\n".join(parts)


def api_page() -> str:
    """``landscape``'s public names, then every public module with its names not yet shown."""
    import landscape

    parts = ["# API reference\n"]
    seen: set[int] = set()
    modules = ["landscape"] + sorted(
        m.name
        for m in pkgutil.walk_packages(landscape.__path__, "landscape.")
        if not any(p.startswith("_") for p in m.name.split("."))
        and m.name not in ("landscape.cli", "landscape.evaluate")  # CLI page; old alias
    )
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:  # an integration whose framework is not installed
            continue
        members = [m for m in getattr(module, "__all__", []) if id(getattr(module, m)) not in seen]
        seen.update(id(getattr(module, m)) for m in members)
        parts += [f"## `{name}`\n", "```{eval-rst}", f".. automodule:: {name}"]
        parent, _, short = name.rpartition(".")
        if parent and getattr(sys.modules[parent], short) is not module:
            parts.append("   :no-index:")  # landscape.sharpness: the function has the name
        parts += ["", f".. currentmodule:: {name}", ""]
        for member in members:
            kind, option = _directive(getattr(module, member))
            parts += [f".. {kind}:: {member}", f"   {option}", ""]
        parts.append("```\n")
    return "\n".join(parts)


def _directive(obj: object) -> tuple[str, str]:
    """The autodoc directive for a public name, and its option."""
    if isinstance(obj, type):
        mixins = obj.__mro__[1:-1]  # the Objective's: calling, checks, points
        if mixins and all(b.__module__.startswith("landscape.objective.") for b in mixins):
            return "autoclass", ":members:\n   :inherited-members:"
        return "autoclass", ":members:"
    return ("autofunction", "") if callable(obj) else ("autodata", ":no-value:")


def gallery_page(examples: list[Path]) -> str:
    """Each example's docstring, the figures it writes and its code."""
    parts = ["# Gallery\n", "Every example runs with `LANDSCAPE_QUICK=1` in the test suite.\n"]
    for example in examples:
        doc = ast.get_docstring(ast.parse(example.read_text(encoding="utf-8"))) or ""
        title, _, body = doc.partition("\n")
        parts += [f"## {title.rstrip('.')}\n", f"`examples/{example.name}`\n",
                  ROLE.sub(r"{\1}`", body).strip() + "\n"]  # fmt: skip
        for figure in dict.fromkeys(FIGURE.findall(doc)):
            if (ROOT / "figures" / figure).is_file():
                parts.append(f"![{figure}](figures/{figure})\n")
        parts += ["```{literalinclude} " + f"examples/{example.name}", ":language: python",
                  "```\n"]  # fmt: skip
    return "\n".join(parts)


def build(out: Path) -> int:
    """Write the sources into ``out/src`` and the HTML into ``out/html``; Sphinx's status."""
    from sphinx.cmd.build import build_main

    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(HERE, src, ignore=shutil.ignore_patterns("build.py", "__pycache__"))
    shutil.copytree(ROOT / "figures", src / "figures", ignore=shutil.ignore_patterns("*.h5"))
    shutil.copytree(ROOT / "examples", src / "examples", ignore=shutil.ignore_patterns("__*"))
    shutil.copy(ROOT / "README.md", src / "README.md")
    examples = sorted((src / "examples").glob("*.py"))
    (src / "cli.md").write_text(cli_page(), encoding="utf-8")
    (src / "api.md").write_text(api_page(), encoding="utf-8")
    (src / "gallery.md").write_text(gallery_page(examples), encoding="utf-8")
    args = ["-W", "--keep-going", "-n", "-q", "-b", "html", "-d", str(out / "doctrees")]
    return build_main([*args, str(src), str(out / "html")])


if __name__ == "__main__":
    sys.exit(build(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / "docs")))
