"""The `[hsm]` table of switchd.toml: PKCS#11 module, token, where the PIN comes from, and the signing keys.

The PIN itself never appears in config: `pin_file` names a file (mode 0600) holding it, `pin_env` an environment
variable. `HsmSettings.resolved` turns relative paths absolute and checks the values; `switchd.config` calls it
and turns `HsmSettingsError` into a ConfigError naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

Algorithm = Literal["rsa-2048", "rsa-3072", "ec-p256"]

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_TOKEN = "switchd-dev"
# Under the data dir: the dev token's own SoftHSM config and token folder, the PIN file and the login lock.
HSM_SUBDIR = "hsm"


class HsmSettingsError(ValueError):
    """A bad `[hsm]` value: `key` is the dotted key below `hsm` (e.g. `keys[1].label`)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class KeySettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One signing key on the token, found by its label (CKA_LABEL of the private key)."""

    label: str
    algorithm: Algorithm
    # PEM certificate file. None: the certificate object with the same label on the token (what init-dev makes).
    cert: str | None = None


class HsmSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`[hsm]`. Paths given relative are relative to the config file's folder; defaults live under the data dir."""

    module: str = DEFAULT_MODULE
    token: str = DEFAULT_TOKEN  # token label; never a slot number (SoftHSM reassigns slots)
    pin_file: str | None = None  # default (when pin_env is not set either): <data_dir>/hsm/user.pin
    pin_env: str | None = None  # name of an environment variable holding the PIN
    # SoftHSM only: its config file (tokendir under the data dir). Default <data_dir>/hsm/softhsm2.conf when the
    # module is SoftHSM; other modules get no SOFTHSM2_CONF.
    softhsm2_conf: str | None = None
    login_lock: str | None = None  # file locked around C_Login; default <data_dir>/hsm/login.lock
    keys: tuple[KeySettings, ...] = ()
    active: str | None = None  # label of the key that signs outbound messages; default: the only key
    workers: int | None = None  # signer processes; None: cores - 1 (at least 1)
    batch_max: int = 32  # messages per job sent to a signer process

    @property
    def connection(self) -> tuple[str | None, ...]:
        """What a logged-in session depends on (module, token, PIN source, SoftHSM config); keys may change under
        one session, these may not (a signer keeps its session per connection; a reload cannot switch them)."""
        return (self.module, self.token, self.pin_file, self.pin_env, self.softhsm2_conf)

    def key(self, label: str) -> KeySettings:
        for k in self.keys:
            if k.label == label:
                return k
        raise KeyError(label)

    @property
    def active_key(self) -> KeySettings:
        if self.active is None:
            raise HsmSettingsError("active", "no active key (settings were not resolved)")
        return self.key(self.active)

    @property
    def is_softhsm(self) -> bool:
        return "softhsm" in Path(self.module).name

    def resolved(self, *, config_dir: Path, data_dir: Path) -> HsmSettings:
        """A copy with every path absolute and every default filled in. Raises HsmSettingsError."""

        def absolute(p: str) -> str:
            q = Path(p)
            return str(q if q.is_absolute() else (config_dir / q).resolve())

        hsm_dir = data_dir / HSM_SUBDIR
        if not self.token:
            raise HsmSettingsError("token", "a token label is needed")
        if self.pin_file is not None and self.pin_env is not None:
            raise HsmSettingsError("pin_env", "give pin_file or pin_env, not both")
        if self.pin_env is not None and not self.pin_env:
            raise HsmSettingsError("pin_env", "an environment variable name is needed")
        if not self.keys:
            raise HsmSettingsError("keys", "at least one [[hsm.keys]] entry is needed")
        seen: set[str] = set()
        keys = []
        for i, k in enumerate(self.keys):
            if not k.label:
                raise HsmSettingsError(f"keys[{i}].label", "a key label is needed")
            if k.label in seen:
                raise HsmSettingsError(f"keys[{i}].label", f"duplicate key label {k.label!r}")
            seen.add(k.label)
            keys.append(msgspec.structs.replace(k, cert=absolute(k.cert)) if k.cert else k)
        active = self.active
        if active is None:
            if len(self.keys) != 1:
                raise HsmSettingsError("active", "with several keys, name the active one")
            active = self.keys[0].label
        elif active not in seen:
            raise HsmSettingsError("active", f"{active!r} is not the label of a configured key")
        if self.workers is not None and not 1 <= self.workers <= 64:
            raise HsmSettingsError("workers", "must be between 1 and 64")
        if not 1 <= self.batch_max <= 1024:
            raise HsmSettingsError("batch_max", "must be between 1 and 1024")

        pin_file = self.pin_file
        if pin_file is not None:
            pin_file = absolute(pin_file)
        elif self.pin_env is None:
            pin_file = str(hsm_dir / "user.pin")
        conf = self.softhsm2_conf
        if conf is not None:
            conf = absolute(conf)
        elif self.is_softhsm:
            conf = str(hsm_dir / "softhsm2.conf")
        return msgspec.structs.replace(
            self,
            pin_file=pin_file,
            softhsm2_conf=conf,
            login_lock=absolute(self.login_lock) if self.login_lock else str(hsm_dir / "login.lock"),
            keys=tuple(keys),
            active=active,
        )


def dev_settings(data_dir: Path, **overrides: object) -> HsmSettings:
    """The settings `switchctl hsm init-dev` works with when config has no `[hsm]`: SoftHSM under `data_dir`."""
    raw = HsmSettings(
        keys=(KeySettings("switchd-rsa-1", "rsa-2048"), KeySettings("switchd-ec-1", "ec-p256")),
        active="switchd-rsa-1",
    )
    raw = msgspec.structs.replace(raw, **overrides)
    return raw.resolved(config_dir=data_dir, data_dir=data_dir)
