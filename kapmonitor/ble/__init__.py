"""The BLE layer: adapter/connection manager, device matching, link helpers, CLI (scan, pair).

Drivers live in :mod:`kapmonitor.drivers` (``ble_*`` modules); the simulated bleak backend in
:mod:`kapmonitor_simulators.ble`.
"""
