"""What every network handler is given: the settings, the index and the file store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfnode.archive.db import Database
from perfnode.config import Settings


@dataclass
class NodeContext:
    settings: Settings
    db: Database
    #: ``perfnode.archive.storage.Storage`` (files under ``settings.data``).
    storage: Any
    #: Called after an instance is durably stored and acknowledged, off the network thread:
    #: ``hook(ctx, instance_row_id, absolute_file_path, header)``, ``header`` being the dataset of
    #: index attributes read at store time (no pixel data). Errors are logged, never fatal.
    after_store: list[Callable[[NodeContext, int, Path, Any], None]] = field(default_factory=list)
    #: Set by the running server: ``run_after_store(instance_row_id, absolute_file_path, header)``
    #: schedules the ``after_store`` hooks in its thread pool. ``None`` outside a server.
    run_after_store: Callable[[int, Path, Any], None] | None = None
