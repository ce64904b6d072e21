"""Result rows, their targets, the printed table and the JSON file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """What a row must show. `of` says which figure is judged:

    "ratio"   pyqueue / baseline must be >= `at_least`
    "value"   the pyqueue figure must be < `below` or <= `at_most` or >= `at_least`
    """

    of: str
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None

    def describe(self, unit: str) -> str:
        subject = "x baseline" if self.of == "ratio" else unit
        if self.at_least is not None:
            what = f">= {self.at_least:g}"
        elif self.below is not None:
            what = f"< {self.below:g}"
        else:
            what = f"<= {self.at_most:g}"
        if self.of == "ratio":
            return f"{what} {subject}"
        return f"{what} {subject}".strip()

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        judged = ratio if self.of == "ratio" else value
        if judged is None:
            return None
        if self.at_least is not None:
            return judged >= self.at_least
        if self.below is not None:
            return judged < self.below
        assert self.at_most is not None
        return judged <= self.at_most


@dataclass
class Row:
    """One line of the table: a pyqueue figure beside the raw-SQL baseline."""

    scenario: str
    unit: str
    pyqueue: float | None
    baseline: float | None
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.pyqueue is None or not self.baseline:
            return None
        return self.pyqueue / self.baseline

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.pyqueue, self.ratio)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "unit": self.unit,
            "pyqueue": self.pyqueue,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "target": None if self.target is None else self.target.describe(self.unit),
            "met": self.met,
            "note": self.note,
        }


@dataclass
class Report:
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # Scenarios that raised, by name: the table still prints, the JSON says why.
    errors: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "results": [row.as_json() for row in self.rows],
            "details": self.details,
            "errors": self.errors,
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2, default=str) + "\n")


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.2f}"
    if unit == "x":
        return f"{value:.3f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def render_table(report: Report) -> str:
    """The settings, then one aligned table of every row."""
    lines = ["Settings:"]
    width = max(len(key) for key in report.settings)
    for key, value in report.settings.items():
        lines.append(f"  {key.ljust(width)}  {value}")
    lines.append("")
    header = ["scenario", "unit", "pyqueue", "raw SQL", "ratio", "target", "met?"]
    cells = []
    for row in report.rows:
        met = {True: "yes", False: "NO", None: "-"}[row.met]
        cells.append(
            [
                row.scenario,
                row.unit,
                _number(row.pyqueue, row.unit),
                _number(row.baseline, row.unit),
                "-" if row.ratio is None else f"{row.ratio:.2f}",
                "-" if row.target is None else row.target.describe(row.unit),
                met,
            ]
        )
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    numeric = {2, 3, 4}

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if i in numeric else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines.append(line(header))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(line(c) for c in cells)
    notes = [f"  {row.scenario}: {row.note}" for row in report.rows if row.note]
    if notes:
        lines += ["", "Notes:", *notes]
    if report.errors:
        lines += ["", "Scenarios that failed:"]
        lines += [f"  {name}: {error}" for name, error in report.errors.items()]
    return "\n".join(lines)
