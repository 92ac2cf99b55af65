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
    from pathlib import Path

    from watcherd.config import Config
    from watcherd.store.interface import StoreReader

T = TypeVar("T")


def _config_file(args: argparse.Namespace) -> tuple[Path, bool]:
    """The config named by --config, $WATCHERD_CONFIG, or the default path, and whether
    it must exist: an explicitly named file must; the implicit `./watcherd.yaml` may be
    absent, in which case the defaults apply with paths relative to this folder."""
    if args.config is not None:
        return args.config, True
    return default_config_path(), bool(os.environ.get("WATCHERD_CONFIG"))


def load(args: argparse.Namespace) -> Config:
    """The config of `_config_file`."""
    from watcherd.config import default_config, load_config

    path, required = _config_file(args)
    return load_config(path) if required or path.exists() else default_config(path)


def load_read(args: argparse.Namespace) -> ReadConfig:
    """What a read command needs of the config `load` would load: the same rules, but
    from the cache (`watcherd.config.cache`) when it holds them, without PyYAML."""
    path, required = _config_file(args)
    return load_read_config(path, required=required)


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
