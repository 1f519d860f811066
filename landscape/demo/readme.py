"""The README's demo table: :func:`update_readme_table` (``make readme-table``)."""

from __future__ import annotations

import os

__all__ = ["README_TABLE_MARKERS", "update_readme_table"]

#: The lines around the demo's table in a README; :func:`update_readme_table` fills them in.
README_TABLE_MARKERS = (
    "<!-- demo table: written by `make readme-table` -->",
    "<!-- end of demo table -->",
)


def update_readme_table(readme: str, table: str) -> bool:
    r"""Put ``table`` between the :data:`README_TABLE_MARKERS` lines of ``readme``.

    The file is rewritten only when its text changes (atomically), so an unchanged table
    leaves it untouched.

    Returns:
        Whether the file was rewritten.

    Raises:
        ValueError: the file lacks the markers.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "README.md")
        >>> start, end = README_TABLE_MARKERS
        >>> _ = open(path, "w").write(f"# x\n{start}\nold\n{end}\n")
        >>> update_readme_table(path, "| a |"), update_readme_table(path, "| a |")
        (True, False)
    """
    start, end = README_TABLE_MARKERS
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    if start not in text or end not in text.split(start, 1)[1]:
        raise ValueError(
            f"{readme} has no demo table to update: expected the lines {start!r} and {end!r}"
        )
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    new = f"{head}{start}\n{table.strip()}\n{end}{tail}"
    if new == text:
        return False
    temporary = f"{readme}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(temporary, readme)
    return True
