"""Compatibility name for :mod:`kapmonitor.driver_api` (the driver contract moved there so that
the BLE and serial transports below the drivers need not import this package)."""

from kapmonitor.driver_api import *  # noqa: F403
