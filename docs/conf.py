"""Sphinx configuration of landscape's documentation; ``build.py`` beside it runs the build."""

from sphinx.util.nodes import make_refnode

from landscape._version import __version__

project = "landscape"
release = version = __version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["README.md", "examples", "figures"]  # included or copied, not pages
myst_heading_anchors = 3
autodoc_typehints = "none"  # the docstrings say what each argument is
autodoc_member_order = "bysource"
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not a second entry beside autodoc's
suppress_warnings = ["myst.header"]  # README sections keep their levels inside a page
html_theme = "alabaster"
html_title = f"landscape {release}"
nitpick_ignore_regex = [
    # other libraries and the standard library: their inventories would be downloads
    ("py:.*", r"(torch|nn|np|numpy|scipy|matplotlib|h5py|collections|fnmatch|typing)\b.*"),
    ("py:.*", r".*\b_\w+.*"),  # private modules and helpers are not documented
    # prose and the first of several names ("lambda_max, lambda_min: ...") that Napoleon
    # read as a type; this library's classes are CamelCase
    ("py:class", r".* .*|Number|[a-z_0-9]+"),
    ("py:data", r"[A-Z_]+"),  # module constants outside __all__ are not documented
    ("py:attr", r"\w+"),  # an attribute of the class at hand, from its "Attributes:" fields
]


def resolve_short_name(app, env, node, contnode):
    """Resolve a Python reference by the end of its name, where exactly one object matches.

    Docstrings name objects the way their module sees them (``Objective``,
    ``landscape.hessian.hessian_trace``), while the API page documents each object once,
    under its public name (``landscape.Objective``, ``landscape.hessian_trace``).
    """
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    kinds = set(domain.objtypes_for_role(node["reftype"]) or ())
    names = {n: e for n, e in domain.objects.items() if e.objtype in kinds}
    if "module" in kinds:
        names.update(domain.modules)
    parts = node["reftarget"].lstrip(".~").split(".")
    for start in range(len(parts)):
        suffix = ".".join(parts[start:])
        found = {names[n].node_id: n for n in names if n == suffix or n.endswith("." + suffix)}
        if len(found) > 1 and node.get("py:class"):  # an attribute of the class at hand
            context = f".{node['py:class']}.{suffix}"
            found = {i: n for i, n in found.items() if n.endswith(context)}
        if len(found) == 1:
            (name,) = found.values()
            entry = names[name]
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name
            )
    return None


def drop_type_docstring(app, what, name, obj, options, lines):
    """A constant has no docstring of its own: not its type's (``dict``'s) in its place."""
    if what == "data" and obj.__doc__ == type(obj).__doc__:
        lines.clear()


def setup(app):
    app.connect("missing-reference", resolve_short_name)
    app.connect("autodoc-process-docstring", drop_type_docstring)
