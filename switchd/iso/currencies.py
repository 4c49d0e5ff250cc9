"""ISO 4217 currency codes and their minor units, read once from the iso4217 package (its copy of the ISO list).

Its own module so that reading a config (route currencies) needs only this (`python -X importtime`: 0.03-0.05 s),
not the whole rules module (0.17-0.22 s), which every switchctl command would then pay.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import iso4217

# ISO 4217 minor units by code; None where ISO 4217 says "N.A." (metals, funds, XXX, XTS).
MINOR_UNITS: Mapping[str, int | None] = MappingProxyType({c.code: c.exponent for c in iso4217.Currency})
