"""The ``[pipeline]`` table of the config file.

::

    [pipeline]
    enabled = true
    stable_s = 10          # a series with no new instance for this long is complete
    workers = 1            # analysis processes
    destinations = ["PACS"]            # where maps go (AE titles from the AE table)
    return_to_sender = false           # also send maps back to the AE that sent the series
    commit = false                     # ask each destination for storage commitment (report on
                                       # the same association; commit_timeout_s = 60)
    colour = false                     # also send colour renderings (not for quantitative use)

    [pipeline.destinations_by_ae]      # per calling AE, instead of `destinations`
    MR3T = ["PACS", "VIEWER"]

    [[pipeline.rules]]                 # technique overrides, see perfnode.pipeline.technique
    protocol = "*dsc*"
    technique = "dsc"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perfnode.config import ConfigError, Settings


@dataclass(frozen=True)
class PipelineSettings:
    enabled: bool = True
    stable_s: float = 10.0
    poll_s: float = 0.5
    workers: int = 1
    destinations: tuple[str, ...] = ()
    destinations_by_ae: dict[str, tuple[str, ...]] = field(default_factory=dict)
    return_to_sender: bool = False
    commit: bool = False
    #: How long to wait for the destination's N-EVENT-REPORT on the commitment association.
    commit_timeout_s: float = 60.0
    colour: bool = False
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    #: Give up delivering (job failed) after this long; 0 = never.
    retry_give_up_s: float = 86_400.0
    rules: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineSettings:
        raw = dict(settings.section("pipeline"))
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"[pipeline]: unknown setting(s) {', '.join(sorted(unknown))}")
        raw["destinations"] = tuple(raw.get("destinations", ()))
        raw["destinations_by_ae"] = {k: tuple(v) for k, v in raw.get("destinations_by_ae", {}).items()}
        raw["rules"] = tuple(raw.get("rules", ()))
        out = cls(**raw)
        for ae in (*out.destinations, *(a for v in out.destinations_by_ae.values() for a in v)):
            settings.peer(ae)  # raises ConfigError naming an AE missing from the AE table
        return out

    def destinations_for(self, calling_ae: str, settings: Settings) -> list[str]:
        dests = list(self.destinations_by_ae.get(calling_ae.strip(), self.destinations))
        if self.return_to_sender and calling_ae.strip() in settings.peers and calling_ae.strip() not in dests:
            dests.append(calling_ae.strip())
        return dests
