"""What every network handler is given: the settings, the index and the file store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perfnode.archive.db import Database
from perfnode.config import Settings


@dataclass
class NodeContext:
    settings: Settings
    db: Database
    #: ``perfnode.archive.storage.Storage`` (files under ``settings.data``).
    storage: Any
