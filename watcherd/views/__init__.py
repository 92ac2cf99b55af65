"""Pure renderers for the CLI: data in, text (or JSON-ready dicts, or HTML) out.

Nothing here reads files, the database or the clock: the caller passes `now`, the
terminal width and whether to use colour. Every string from the server is made `safe`
where it joins a line, and the CLI passes every page through `terminal_text`.
"""

from watcherd.views._fmt import safe, terminal_text

__all__ = ["safe", "terminal_text"]
