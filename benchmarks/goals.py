"""What the benchmarks share: percentiles, and each goal printed beside its figure.

Every benchmark prints, for each goal of issue 18, one line

    goal <name>: <value> (want >= <x>)      or      goal <name>: <value> (want <= <x>)

and exits with status 1 when any goal is missed (`Goals.exit_code`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Goals:
    """The goals checked by one benchmark run, printed as they are checked."""

    missed: list[str] = field(default_factory=list)

    def at_least(self, name: str, value: float, want: float, fmt: str = "{:,.2f}") -> bool:
        """A goal met when `value` >= `want`."""
        return self._check(name, value, want, value >= want, ">=", fmt)

    def at_most(self, name: str, value: float, want: float, fmt: str = "{:,.2f}") -> bool:
        """A goal met when `value` <= `want`."""
        return self._check(name, value, want, value <= want, "<=", fmt)

    def _check(self, name: str, value: float, want: float, met: bool, sign: str,
               fmt: str) -> bool:
        print(f"goal {name}: {fmt.format(value)} (want {sign} {fmt.format(want)})", flush=True)
        if not met:
            self.missed.append(name)
        return met

    def exit_code(self) -> int:
        """0 when every goal was met, else 1 (saying which were missed)."""
        if self.missed:
            print(f"goals missed: {', '.join(self.missed)}", flush=True)
            return 1
        return 0
