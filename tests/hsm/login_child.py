"""What one freshly spawned process does in test_login_race: kept apart so that the child imports nothing else."""

from __future__ import annotations

from multiprocessing.queues import Queue

from hsm.settings import HsmSettings


def open_and_close(settings: HsmSettings, out: Queue[str]) -> None:
    """Load the module, find the token, log in, find the active key, close; report how it went."""
    from hsm.token import Token

    try:
        token = Token.open(settings)
        token.key(settings.active or "")
        token.close()
        out.put("ok")
    except Exception as exc:
        out.put(f"{type(exc).__name__}: {exc}")
