"""The post-store work of ``perfnode serve``, as a service module of :mod:`perfnode.net.server`.

* ``after_store``: record the IHE PERF findings of every stored object in the index;
* ``start``: the pipeline supervisor (completion → jobs → maps → destinations).

It accepts no presentation contexts of its own.
"""

from __future__ import annotations

from perfnode.archive.findings import record_findings as after_store
from perfnode.config import Settings
from perfnode.net.context import NodeContext
from perfnode.pipeline.runner import start

__all__ = ["after_store", "contexts", "handlers", "start"]


def contexts(settings: Settings) -> list:
    return []


def handlers(ctx: NodeContext) -> list:
    return []
