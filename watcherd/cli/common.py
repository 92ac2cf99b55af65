"""What every command needs: the config, the database, the terminal."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from watcherd.config.cache import load_read_config
from watcherd.config.reading import ReadConfig, default_config_path
from watcherd.errors import StoreError
from watcherd.store.snapshot import read_store
from watcherd.views import terminal_text

if TYPE_CHECKING:
    from watcherd.config import Config
    from watcherd.store.interface import StoreReader

T = TypeVar("T")


def load(args: argparse.Namespace) -> Config:
    """The config named by --config, $WATCHERD_CONFIG, or the default path.

    An explicitly named file must exist; the implicit `./watcherd.yaml` may be
    absent, in which case the defaults apply with paths relative to this folder.
    """
    from watcherd.config import default_config, load_config

    if args.config is not None:
        return load_config(args.config)
    path = default_config_path()
    if os.environ.get("WATCHERD_CONFIG") or path.exists():
        return load_config(path)
    return default_config(path)


def load_read(args: argparse.Namespace) -> ReadConfig:
    """What a read command needs of the config `load` would load: the same rules, but
    from the cache (`watcherd.config.cache`) when it holds them, without PyYAML."""
    if args.config is not None:
        return load_read_config(args.config, required=True)
    path = default_config_path()
    return load_read_config(path, required=bool(os.environ.get("WATCHERD_CONFIG")))


def read(config: ReadConfig, reading: Callable[[StoreReader], Coroutine[Any, Any, T]]) -> T:
    """`reading` run over the database opened for reading, with a hint when there is none yet.

    SQLite is read with plain sqlite3 (no event loop: the command starts fast); a
    `postgresql://` store through its async StoreApi.
    """
    if config.store.url is None and not config.store.path.exists():
        raise StoreError(
            f"{config.store.path}: no database yet; start the daemon with `watcherd run` "
            "(or `watcherd run --once`) to create it"
        )
    return read_store(config.store, reading)


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
