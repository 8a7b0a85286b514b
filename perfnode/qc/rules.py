"""Protocol and data-quality rules as data: the shipped TOML files plus a site's own.

Each technique has one file in ``perfnode/qc/protocols/`` (``dsc.toml``, ``dce.toml``, ...)::

    technique = "dsc"
    title = "DSC-MRI of the brain"
    reference = "van Houdt et al., ESR Essentials: perfusion MRI, Eur Radiol 2026"

    [defaults]                      # facts assumed when neither header nor data give them
    dce_purpose = "permeability"

    [[rule]]                        # protocol compliance
    id = "dsc.te.3t"
    fact = "echo_time_ms"
    when = { field_strength_t = { min = 2.5, max = 3.5 } }
    min = 25
    max = 35
    severity = "warning"
    source = "ESR 2026 Table 1 (DSC): TE 25–35 ms at 3 T"

    [[quality]]                     # data quality: same keys, measured facts
    id = "dsc.q.baseline_tsnr"
    fact = "baseline_tsnr"
    min = 20
    source = "perfnode default"

A check is any of ``min``/``max`` (inclusive), ``lt``/``gt`` (strict), ``equals``, ``one_of``,
``ranges`` (a number inside any of the ``[lo, hi]`` intervals), ``contains`` (a list fact holds all
these values) and ``includes`` (a list fact has a value inside each ``[lo, hi]`` interval). ``when``
holds the same checks on other facts; a rule applies only when they all pass (a missing fact fails).
``missing`` is the severity of the finding when the fact cannot be determined, or ``"skip"``.

A site overrides a rule by giving its ``id`` again in a file of its own directory (only the keys it
gives change; ``enabled = false`` drops the rule) and adds rules with new ids.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from perfnode.dicom.findings import Severity

CHECK_KEYS = ("min", "max", "lt", "gt", "equals", "one_of", "ranges", "contains", "includes")
RULE_KEYS = {
    "id",
    "fact",
    "when",
    "severity",
    "missing",
    "source",
    "attribute",
    "unit",
    "expected",
    "enabled",
    "note",
    *CHECK_KEYS,
}
GROUPS = {"rule": "protocol", "quality": "quality"}


class RuleError(ValueError):
    """A rule file is malformed; the message names the file, the rule id and the key."""


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


@dataclass(frozen=True)
class Check:
    """One test on one value; every given key must pass."""

    min: float | None = None
    max: float | None = None
    lt: float | None = None
    gt: float | None = None
    equals: Any = None
    one_of: tuple[Any, ...] = ()
    ranges: tuple[tuple[float, float], ...] = ()
    contains: tuple[Any, ...] = ()
    includes: tuple[tuple[float, float], ...] = ()

    @classmethod
    def parse(cls, spec: Mapping[str, Any], where: str) -> Check:
        kw: dict[str, Any] = {}
        for key in CHECK_KEYS:
            if key not in spec:
                continue
            v = spec[key]
            if key in ("min", "max", "lt", "gt"):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise RuleError(f"{where}: {key} must be a number, not {v!r}")
                kw[key] = float(v)
            elif key in ("ranges", "includes"):
                try:
                    kw[key] = tuple((float(lo), float(hi)) for lo, hi in v)
                except (TypeError, ValueError):
                    raise RuleError(
                        f"{where}: {key} must be a list of [low, high] pairs, not {v!r}"
                    ) from None
            elif key in ("one_of", "contains"):
                if not isinstance(v, list):
                    raise RuleError(f"{where}: {key} must be a list, not {v!r}")
                kw[key] = tuple(_norm(x) for x in v)
            else:
                kw[key] = _norm(v)
        if not kw:
            raise RuleError(f"{where}: no check given (one of {', '.join(CHECK_KEYS)})")
        return cls(**kw)

    def test(self, value: Any) -> bool:
        """True when ``value`` passes every given check."""
        v = _norm(value)
        num = _number(v)
        for bound, ok in (
            (self.min, lambda b: num >= b),
            (self.max, lambda b: num <= b),
            (self.lt, lambda b: num < b),
            (self.gt, lambda b: num > b),
        ):
            if bound is not None and (num is None or not ok(bound)):
                return False
        if self.equals is not None and v != self.equals:
            return False
        if self.one_of and v not in self.one_of:
            return False
        if self.ranges and (num is None or not any(lo <= num <= hi for lo, hi in self.ranges)):
            return False
        items = v if isinstance(v, tuple) else (v,)
        if self.contains and not all(c in items for c in self.contains):
            return False
        if self.includes:
            nums = [n for n in (_number(x) for x in items) if n is not None]
            if not all(any(lo <= n <= hi for n in nums) for lo, hi in self.includes):
                return False
        return True

    def describe(self, unit: str = "") -> str:
        """What passes, in words: "25–35 ms", "< 4 s", "contains GR"."""
        u = f" {unit}" if unit else ""
        parts = []
        if self.min is not None and self.max is not None:
            parts.append(f"{_fmt(self.min)}–{_fmt(self.max)}{u}")
        elif self.min is not None:
            parts.append(f"≥ {_fmt(self.min)}{u}")
        elif self.max is not None:
            parts.append(f"≤ {_fmt(self.max)}{u}")
        if self.gt is not None:
            parts.append(f"> {_fmt(self.gt)}{u}")
        if self.lt is not None:
            parts.append(f"< {_fmt(self.lt)}{u}")
        if self.equals is not None:
            parts.append(_fmt(self.equals))
        if self.one_of:
            parts.append("one of " + _fmt(self.one_of))
        if self.ranges:
            parts.append(" or ".join(f"{_fmt(lo)}–{_fmt(hi)}{u}" for lo, hi in self.ranges))
        if self.contains:
            parts.append("including " + _fmt(self.contains))
        if self.includes:
            parts.append(
                "values in each of "
                + "; ".join(
                    (f"{_fmt(lo)}{u}" if lo == hi else f"{_fmt(lo)}–{_fmt(hi)}{u}")
                    for lo, hi in self.includes
                )
            )
        return " and ".join(parts)


def _norm(v: Any) -> Any:
    """Compare strings case-insensitively and sequences as tuples."""
    if isinstance(v, str):
        return v.strip().upper()
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    return v


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Rule:
    """One recommendation: a check on one fact, when other facts hold, with its source."""

    id: str
    technique: str
    group: str  # "protocol" or "quality"
    fact: str
    check: Check
    severity: Severity
    source: str
    when: tuple[tuple[str, Check], ...] = ()
    missing: Severity | None = Severity.INFO  # None: skip when the fact is unknown
    attribute: str | None = None  # DICOM keyword to name in the finding, if not the fact's own
    unit: str = ""
    expected: str = ""  # words for the finding's "expected", overriding check.describe()
    origin: str = ""  # file the rule (or its last override) came from

    def applies(self, facts: Mapping[str, Any]) -> bool:
        """All ``when`` conditions hold on the facts (values, or objects with ``.value``)."""
        for name, cond in self.when:
            f = facts.get(name)
            value = getattr(f, "value", f)
            if value is None or not cond.test(value):
                return False
        return True

    def expected_text(self) -> str:
        from perfnode.qc.facts import FACTS, label

        text = self.expected or self.check.describe(self.unit)
        if self.when:
            text += " when " + ", ".join(
                f"{label(n)} {c.describe(FACTS.get(n, ('',))[0])}" for n, c in self.when
            )
        return text


@dataclass
class Protocol:
    """The rules of one technique and the facts it assumes by default."""

    technique: str
    title: str = ""
    reference: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    origins: list[str] = field(default_factory=list)

    def by_group(self, group: str) -> list[Rule]:
        return [r for r in self.rules.values() if r.group == group]


def _severity(v: Any, where: str, allow_skip: bool = False) -> Severity | None:
    if allow_skip and str(v).lower() == "skip":
        return None
    try:
        return Severity(str(v).lower())
    except ValueError:
        extra = ", skip" if allow_skip else ""
        raise RuleError(f"{where}: severity {v!r}: expected error, warning, info{extra}") from None


def _rule_from(
    spec: Mapping[str, Any], technique: str, group: str, origin: str, base: Rule | None = None
) -> Rule:
    rid = spec.get("id")
    where = f"{origin}: [[{'rule' if group == 'protocol' else 'quality'}]] {rid!r}"
    unknown = set(spec) - RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    from perfnode.qc.facts import FACTS  # the fact registry (units, descriptions)

    fact = spec.get("fact", base.fact if base else None)
    if not fact:
        raise RuleError(f"{where}: no fact named")
    if fact not in FACTS and not str(fact).startswith("x_"):
        raise RuleError(
            f"{where}: unknown fact {fact!r} (known: {', '.join(sorted(FACTS))}; "
            "site-defined facts start with x_)"
        )
    check_spec = {k: spec[k] for k in CHECK_KEYS if k in spec}
    check = Check.parse(check_spec, where) if check_spec else (base.check if base else None)
    if check is None:
        raise RuleError(f"{where}: no check given (one of {', '.join(CHECK_KEYS)})")
    when = base.when if base else ()
    if "when" in spec:
        if not isinstance(spec["when"], Mapping):
            raise RuleError(f"{where}: when must be a table of fact = check")
        when = tuple(
            (name, Check.parse(c if isinstance(c, Mapping) else {"equals": c}, f"{where} when {name}"))
            for name, c in spec["when"].items()
        )
    default_missing = Severity.INFO if group == "protocol" else None
    missing = (
        _severity(spec["missing"], where, allow_skip=True)
        if "missing" in spec
        else (base.missing if base else default_missing)
    )
    source = spec.get("source", base.source if base else "")
    if not source:
        raise RuleError(f'{where}: every rule cites its source (source = "...")')
    return Rule(
        id=str(rid),
        technique=technique,
        group=group,
        fact=str(fact),
        check=check,
        severity=_severity(spec.get("severity", base.severity if base else "warning"), where),
        source=str(source),
        when=when,
        missing=missing,
        attribute=spec.get("attribute", base.attribute if base else None),
        unit=str(spec.get("unit", base.unit if base else FACTS.get(fact, ("",))[0])),
        expected=str(spec.get("expected", base.expected if base else "")),
        origin=origin,
    )


def _merge_file(protocols: dict[str, Protocol], path: Path | str, text: str) -> None:
    origin = str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{origin}: {exc}") from None
    technique = doc.get("technique")
    if not technique:
        raise RuleError(f'{origin}: technique = "dsc" (or dce, asl, ivim, ...) is required')
    technique = str(technique).lower()
    proto = protocols.setdefault(technique, Protocol(technique))
    proto.title = doc.get("title", proto.title)
    proto.reference = doc.get("reference", proto.reference)
    proto.defaults.update(doc.get("defaults", {}))
    proto.origins.append(origin)
    for table, group in GROUPS.items():
        for spec in doc.get(table, []):
            rid = spec.get("id")
            if not rid:
                raise RuleError(f"{origin}: a [[{table}]] entry has no id")
            if spec.get("enabled", True) is False:
                proto.rules.pop(rid, None)
                continue
            base = proto.rules.get(rid)
            if base is not None and base.group != group:
                raise RuleError(
                    f"{origin}: {rid!r} is a [[{'rule' if base.group == 'protocol' else 'quality'}]]"
                    f" entry, not [[{table}]]"
                )
            proto.rules[rid] = _rule_from(spec, technique, group, origin, base)


def shipped_files() -> list[tuple[str, str]]:
    """(name, text) of the protocol files shipped with perfnode."""
    pkg = resources.files("perfnode.qc") / "protocols"
    return sorted(
        (f"perfnode/qc/protocols/{p.name}", p.read_text(encoding="utf-8"))
        for p in pkg.iterdir()
        if p.name.endswith(".toml")
    )


def load_protocols(site: Path | str | Sequence[Path | str] | None = None) -> dict[str, Protocol]:
    """The shipped protocols, then every ``*.toml`` of the site directories (or files) in order."""
    protocols: dict[str, Protocol] = {}
    for name, text in shipped_files():
        _merge_file(protocols, name, text)
    for path in _site_paths(site):
        _merge_file(protocols, path, path.read_text(encoding="utf-8"))
    return protocols


def _site_paths(site: Path | str | Sequence[Path | str] | None) -> Iterable[Path]:
    if site is None:
        return []
    items = [site] if isinstance(site, (str, Path)) else list(site)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(p.glob("*.toml")))
        elif p.is_file():
            out.append(p)
        else:
            raise RuleError(f"protocols {p}: no such file or directory")
    return out
