"""Errors that name the spec file, line and symbols at fault."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    """Where something was declared: file and 1-based line (0 = unknown)."""

    file: str = "<spec>"
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class SpecError(Exception):
    """A problem with a spec, printed as ``FILE:LINE: message``.

    Args:
        message: what is wrong, naming the symbols at fault.
        loc: where (file and line).
        symbols: the names involved, for tools that want them.
    """

    def __init__(self, message: str, loc: Loc | None = None, symbols: tuple[str, ...] = ()):
        self.message = message
        self.loc = loc or Loc()
        self.symbols = tuple(symbols)
        super().__init__(f"{self.loc}: {message}")


class SpecErrors(SpecError):
    """Several spec errors found in one pass; ``errors`` lists them in file order."""

    def __init__(self, errors: list[SpecError]):
        self.errors = sorted(errors, key=lambda e: (e.loc.file, e.loc.line))
        first = self.errors[0]
        super().__init__(first.message, first.loc, first.symbols)

    def __str__(self) -> str:
        return "\n".join(str(Exception.__str__(e)) if not isinstance(e, SpecError)
                         else f"{e.loc}: {e.message}" for e in self.errors)


@dataclass
class Diagnostics:
    """Collects errors and warnings while checking, raising all errors at once."""

    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)

    def error(self, message: str, loc: Loc | None = None, *symbols: str) -> None:
        self.errors.append(SpecError(message, loc, symbols))

    def warn(self, message: str, loc: Loc | None = None, *symbols: str) -> None:
        self.warnings.append(SpecError(message, loc, symbols))

    def raise_if_errors(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise SpecErrors(self.errors)
