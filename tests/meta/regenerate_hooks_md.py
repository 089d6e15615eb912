"""Regenerate spec/hooks.md from the hookspec docstrings.

Run it as ``python tests/meta/regenerate_hooks_md.py``.

The introduction (everything before "## Registration hooks") is kept as it is;
the per-hook sections are rewritten from ``aliquot.hookspecs``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from aliquot import hookspecs

SPEC = Path(__file__).parents[2] / "spec" / "hooks.md"


def render() -> str:
    text = SPEC.read_text()
    intro = text[: text.index("## Registration hooks")]
    sections: dict[str, list[str]] = {"Registration hooks": [], "Event hooks": []}
    for name in hookspecs.all_hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        lines = []
        for line in doc.replace(":returns:", "- returns:").splitlines():
            if line.startswith(":param "):
                param, _, rest = line[len(":param ") :].partition(":")
                line = f"- `{param}`:{rest}"
            lines.append(line)
        kind = "Registration hooks" if name.startswith("aliquot_register_") else "Event hooks"
        sections[kind].append(f"### {hookspecs.spec_signature(name)}\n\n" + "\n".join(lines) + "\n")
    parts = [intro.rstrip() + "\n"]
    for title, hooks in sections.items():
        parts.append(f"## {title}\n")
        parts.extend(hooks)
    return "\n".join(parts)


if __name__ == "__main__":
    SPEC.write_text(render())
    print(f"wrote {SPEC}")
