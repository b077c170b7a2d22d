"""The C extension's functions (``native/_native.c``), or their pure-Python twins.

Each function of ``archive._native`` has a twin in Python beside its caller
(:mod:`archive.store.place`, :mod:`archive.store.scan`,
:mod:`archive.dicom.header`) giving identical results;
:func:`choose` picks the C one when the extension was built (optional: without a
C compiler the install leaves it out) and ``ARCHIVE_NATIVE=0`` is not set in the
environment (for comparisons).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar, cast

__all__ = ["ENABLED", "EXTENSION", "choose"]

F = TypeVar("F", bound=Callable[..., object])

#: The extension, None where it was not built; also when its functions are not
#: used, for a C function's set-up (the tests compare it with its twin then too).
EXTENSION: ModuleType | None
try:
    from archive import _native as EXTENSION
except ImportError:  # built without a C compiler: the twins do it
    EXTENSION = None

#: Whether the C functions are used.
ENABLED = EXTENSION is not None and os.environ.get("ARCHIVE_NATIVE", "1") != "0"


def choose(name: str, twin: F) -> F:
    """``archive._native.<name>`` if :data:`ENABLED`, else ``twin``.

    Also the twin when the extension lacks the function (built from older
    sources: ``make dev`` rebuilds it); the tests fail under CI then.
    """
    if ENABLED and EXTENSION is not None:
        return cast(F, getattr(EXTENSION, name, twin))
    return twin
