"""README, config.example.yaml and `watcherd --help` stay in step with the code."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from watcherd.cli.parser import build_parser
from watcherd.config import (
    ApiConfig,
    BudgetConfig,
    CommandHook,
    HookConfig,
    JobsConfig,
    LogConfig,
    PollConfig,
    StoreConfig,
    WebhookHook,
    load_config,
)
from watcherd.config.alerting import (
    DivergingRule,
    NonfiniteRule,
    OverrunRule,
    QueuedLongRule,
    StalledRule,
)

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLE = (ROOT / "config.example.yaml").read_text()
# Fields whose YAML spelling differs from the dataclass field.
SPELLED = {
    "api_key": ("api_key_env", "api_key_file", "api_key_credential"),
    "argv": ("command",),
    "action": ("command", "webhook", "notify"),
    "secret": ("secret_file", "secret_credential", "secret_env"),
    "password": ("password_file", "password_credential", "password_env"),
}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_readme_starts_with_the_two_commands() -> None:
    """The first code block of the README is `make demo` then `make test`."""
    block = README.split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_command_and_option_is_in_the_readme(command: str) -> None:
    """Each subcommand of `watcherd --help` and each of its options appear in the README."""
    assert f"`watcherd {command}" in README
    for action in _subcommands()[command]._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                assert option in README, f"{command} {option} is not documented"


def test_help_lists_every_command_the_readme_documents() -> None:
    """Every `watcherd X` row of the README's command table is a real subcommand."""
    documented = set(re.findall(r"^\| `watcherd ([a-z-]+)", README, flags=re.MULTILINE))
    assert documented == set(_subcommands())


def test_the_example_config_loads() -> None:
    """config.example.yaml is a valid configuration."""
    config = load_config(ROOT / "config.example.yaml")
    assert [h.name for h in config.hooks] == ["deploy", "team"]


@pytest.mark.parametrize(
    ("section", "cls"),
    [
        ("api", ApiConfig),
        ("store", StoreConfig),
        ("jobs", JobsConfig),
        ("poll", PollConfig),
        ("log", LogConfig),
        ("hooks", HookConfig),
        ("hooks", CommandHook),
        ("hooks", WebhookHook),
        ("budget", BudgetConfig),
        ("alerts", NonfiniteRule),
        ("alerts", DivergingRule),
        ("alerts", StalledRule),
        ("alerts", QueuedLongRule),
        ("alerts", OverrunRule),
    ],
)
def test_every_config_key_is_in_the_example_and_readme(section: str, cls: type) -> None:
    """Each config field is shown in config.example.yaml and named in the README."""
    assert f"`{section}`" in README
    for name in _field_names(cls):
        for spelling in SPELLED.get(name, (name,)):
            assert re.search(rf"\b{spelling}:", EXAMPLE), f"{section}.{spelling} not in example"
            assert f"`{spelling}" in README or f"{spelling}:" in README, (
                f"{section}.{spelling} not in README"
            )


def _field_names(cls: Any) -> list[str]:
    """A config record's fields: a named tuple's or a dataclass's."""
    if issubclass(cls, tuple):
        return list(cls._fields)
    return [field.name for field in dataclasses.fields(cls)]


def test_ci_runs_the_readme_test_command() -> None:
    """`.ci/run` calls `make test`, and the Makefile has the targets the README names."""
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "bench", "soak"):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target
