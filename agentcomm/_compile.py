"""``torch.compile`` where it works, the plain function where it does not.

torch has no switch that falls back to eager when compilation fails (no C++ compiler for
inductor's CPU code, an unsupported platform): :func:`torch.compile` returns at once and the
failure surfaces on the first call. :class:`CompiledOrEager` makes that first call, and on
any failure warns once and keeps the plain function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["CompiledOrEager"]


class CompiledOrEager:
    """``fn`` under :func:`torch.compile` (fixed shapes: one compilation per input shape),
    or ``fn`` itself when ``enabled`` is False or compiling fails. Pickles as ``fn`` and the
    flag (a compiled function does not pickle); an unpickled copy compiles again on first use.

    Args:
        fn: a picklable function of tensors (a module-level function or a
            :func:`functools.partial` of one).
        enabled: compile at all.
        name: what the warning calls it.
    """

    def __init__(self, fn: Callable[..., Any], enabled: bool, name: str) -> None:
        self.fn, self.enabled, self.name = fn, bool(enabled), name
        self._compiled: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return self.fn(*args, **kwargs)
        if self._compiled is None:
            compiled = torch.compile(self.fn, dynamic=False)
            try:
                out = compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eager
                warnings.warn(
                    f"torch.compile of {self.name} failed ({type(err).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else ''}); running it eagerly",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.enabled = False
                return self.fn(*args, **kwargs)
            self._compiled = compiled
            return out
        return self._compiled(*args, **kwargs)

    @property
    def compiled(self) -> bool:
        """Whether calls run the compiled function (False before the first call)."""
        return self._compiled is not None

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": self.fn, "enabled": self.enabled, "name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["fn"], state["enabled"], state["name"])
