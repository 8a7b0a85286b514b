"""Which analysis a series gets: the technique registry's detector, overridable by config rules.

Rules come from the ``[[pipeline.rules]]`` tables of the config file and are tried in
order; the first whose ``calling_ae`` and ``protocol`` globs both match (case-insensitive;
``protocol`` is matched against Protocol Name and Series Description) decides. A rule's
``technique`` is a registered technique (:func:`perfnode.techniques.names`) or ``"none"``
(never analyse)::

    [[pipeline.rules]]
    calling_ae = "MR3T*"
    protocol = "*perf*dsc*"
    technique = "dsc"

Without a matching rule, :func:`perfnode.techniques.detect_series` decides from every instance of the
series (never from its first file alone) and says when the header is ambiguous.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatch
from typing import Any

from pydicom.dataset import Dataset

from perfnode import techniques
from perfnode.techniques import Decision, detect_series


def rule_for(ds: Dataset, calling_ae: str, rules: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first rule matching the calling AE and the series' protocol name / description, or None."""
    names = [str(ds.get("ProtocolName", "")), str(ds.get("SeriesDescription", ""))]
    for rule in rules:
        ae_glob = str(rule.get("calling_ae", "*")).upper()
        proto_glob = str(rule.get("protocol", "*")).lower()
        if not fnmatch(calling_ae.upper(), ae_glob):
            continue
        if any(fnmatch(n.lower(), proto_glob) for n in names):
            return rule
    return None


def choose(headers: Sequence[Dataset] | Dataset, calling_ae: str = "",
           rules: Iterable[Mapping[str, Any]] = ()) -> Decision:
    """Apply the config rules, then the registry's detector, to the headers of one whole series."""
    series = [headers] if isinstance(headers, Dataset) else list(headers)
    rule = rule_for(series[0], calling_ae, rules)
    if rule is not None:
        technique = str(rule.get("technique", "")).lower()
        if technique == "none":
            return Decision(None, f"[[pipeline.rules]] {dict(rule)}: never analysed", stated=True)
        try:
            name = techniques.get(technique).name
        except KeyError:
            raise ValueError(f"pipeline rule {dict(rule)}: technique must be one of "
                             f"{techniques.names()} or 'none'") from None
        return Decision(name, f"{name.upper()}: set by [[pipeline.rules]] {dict(rule)}", stated=True)
    return detect_series(series)
