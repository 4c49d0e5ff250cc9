"""The Connector protocol: how the delivery workers hand one outbound message to a bank, whatever the channel.

Connectors live in adapters/ (HTTP, directory, simulated bank, ...); the core only knows this protocol, and the
registry in daemon.py builds them from config.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Delivery:
    """One outbound message to hand over. `payload` is the exact bytes to send (AppHdr + Document, signed when
    signing is on); `outbox_id` is stable across attempts and replays, so a bank may use it to spot repeats."""

    outbox_id: str
    message_id: str  # the journal id of the inbound message this part comes from
    message_type: str  # e.g. "pacs.008.001.08"
    msg_id: str  # the outbound Document's GrpHdr/MsgId
    payload: bytes
    attempt: int  # 1 for the first attempt
    possible_duplicate: bool  # the AppHdr carries PssblDplct=true (replay, or an attempt whose outcome is unknown)


class DeliveryFailed(Exception):
    """The connector could not deliver. `retryable` False means retrying cannot help (the bank refused the bytes)."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Connector(Protocol):
    """A destination. `deliver` returns once the bank has the message (a receipt string, or None), or raises
    DeliveryFailed. It must not return before the bytes are safely with the bank: the outbox marks the message
    delivered on return."""

    name: str

    async def deliver(self, delivery: Delivery) -> str | None: ...

    async def aclose(self) -> None: ...


# How a connector that receives answers (the simulated bank, a session) hands a bank's message back to switchd:
# the callback feeds `pipeline.accept` under the connector's participant and returns the HTTP-like status.
InboundSink = Callable[[bytes], Awaitable[int]]
