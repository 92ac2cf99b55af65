"""Pure renderers for the CLI: data in, text (or JSON-ready dicts, or HTML) out.

Nothing here reads files, the database or the clock: the caller passes `now`, the
terminal width and whether to use colour.
"""
