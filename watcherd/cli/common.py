"""What every command needs: the config, the database, the terminal."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from watcherd.config import Config, default_config, default_config_path, load_config
from watcherd.errors import StoreError
from watcherd.store.snapshot import Snapshot
from watcherd.views import terminal_text


def load(args: argparse.Namespace) -> Config:
    """The config named by --config, $WATCHERD_CONFIG, or the default path.

    An explicitly named file must exist; the implicit `./watcherd.yaml` may be
    absent, in which case the defaults apply with paths relative to this folder.
    """
    if args.config is not None:
        return load_config(args.config)
    path = default_config_path()
    if os.environ.get("WATCHERD_CONFIG") or path.exists():
        return load_config(path)
    return default_config(path)


@contextmanager
def reader(config: Config) -> Iterator[Snapshot]:
    """The database opened for reading (plain sqlite3), with a hint when there is none yet."""
    if not config.store.path.exists():
        raise StoreError(
            f"{config.store.path}: no database yet; start the daemon with `watcherd run` "
            "(or `watcherd run --once`) to create it"
        )
    with Snapshot.open(config.store.path) as snapshot:
        yield snapshot


def color_enabled(stream: TextIO = sys.stdout) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def terminal_width() -> int:
    """The terminal's width (COLUMNS wins), 100 when not on a terminal."""
    from watcherd.cli.parser import terminal_columns

    return terminal_columns(100)


def emit(text: str, *, color: bool = False, file: TextIO | None = None) -> None:
    """Print one page for a person: through the last guard against control characters.

    `color` says whether the page holds watcherd's own colour codes (kept); JSON goes
    out with plain `print`, since `json.dumps` escapes every control character.
    """
    print(terminal_text(text, color=color), file=sys.stdout if file is None else file)
