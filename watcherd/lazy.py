"""Package attributes imported on first use (PEP 562 `__getattr__`).

A package whose read commands must start fast (`watcherd.config`, `watcherd.store`,
`watcherd.daemon`) names each public attribute's module instead of importing them all:

    __getattr__ = lazy_attributes(__name__, {"Store": "core", ...})
"""

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: a name of `homes` is imported from
    `package.<its module>` on first use and then kept in the package's namespace."""
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{homes[name]}"), name)
        namespace[name] = value
        return value

    return __getattr__
