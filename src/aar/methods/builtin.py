"""Imports every built-in method module so their ``@method`` decorators run."""

import importlib
import pkgutil

import aar.methods as _pkg

for _info in pkgutil.iter_modules(_pkg.__path__):
    if _info.name not in ("builtin",) and not _info.name.startswith("_"):
        importlib.import_module(f"aar.methods.{_info.name}")
