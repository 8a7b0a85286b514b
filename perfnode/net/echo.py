"""Verification Service Class (C-ECHO) as SCP."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt
from pynetdicom.sop_class import Verification

from perfnode.config import Settings
from perfnode.net.context import Context, NodeContext
from perfnode.net.status import SUCCESS

log = logging.getLogger("perfnode.echo")

TRANSFER_SYNTAXES = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)


def contexts(settings: Settings) -> list[Context]:
    return [Context(Verification, TRANSFER_SYNTAXES)]


def handlers(ctx: NodeContext) -> list[tuple[Any, Callable]]:
    def handle_echo(event: Any) -> int:
        r = event.assoc.requestor
        log.debug("C-ECHO from %s@%s:%s", r.ae_title, r.address, r.port)
        return SUCCESS

    return [(evt.EVT_C_ECHO, handle_echo)]
