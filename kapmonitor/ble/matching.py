"""Which advertisement belongs to which configured device: address, name prefix and service
matching rules (pure; no bleak calls), shared by the manager, the drivers and ``scan``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.uuids import normalize_uuid_str


@dataclass(frozen=True)
class DeviceMatch:
    """A match rule: exact address, or service UUID(s) plus an optional name prefix.

    An address match ignores the other fields (a bonded cuff may advertise without its
    service list). Without an address the advertisement must list one of ``service_uuids``
    (if any are given), its name must start with ``name_prefix`` (if given) and contain one
    of ``name_keywords`` (if given: a driver's default when one service UUID is shared by
    several device families, e.g. Viatom oximeters and the BP2 cuff).
    """

    address: str | None = None
    service_uuids: tuple[str, ...] = ()
    name_prefix: str | None = None
    name_keywords: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        address: str | None,
        service_uuids: Iterable[str],
        name_prefix: str | None,
        name_keywords: Iterable[str] = (),
    ) -> DeviceMatch:
        return cls(
            address.upper() if address else None,
            tuple(normalize_uuid_str(u) for u in service_uuids),
            name_prefix,
            tuple(name_keywords),
        )

    def matches(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        if self.address is not None:
            return device.address.upper() == self.address
        if self.service_uuids and not set(self.service_uuids) & {
            normalize_uuid_str(u) for u in adv.service_uuids
        }:
            return False
        name = adv.local_name or device.name or ""
        if self.name_prefix is not None and not name.startswith(self.name_prefix):
            return False
        if self.name_keywords and not any(k in name for k in self.name_keywords):
            return False
        return bool(self.service_uuids or self.name_prefix)

    def describe(self) -> str:
        if self.address:
            return f"address {self.address}"
        parts = []
        if self.service_uuids:
            parts.append("service " + "/".join(u[4:8] if u.endswith("-0000-1000-8000-00805f9b34fb")
                                               else u for u in self.service_uuids))
        if self.name_prefix:
            parts.append(f"name {self.name_prefix!r}*")
        if self.name_keywords:
            parts.append("name containing " + " or ".join(repr(k) for k in self.name_keywords))
        return " and ".join(parts) or "nothing"
