"""The BLE transport: adapter/connection manager, device matching, GATT link helpers, the
pairing agent, and the radio plug-in point.

What belongs here is how kapmonitor talks to BlueZ through bleak, for any BLE device; it stands
below the drivers (the ``ble_*`` driver modules in :mod:`kapmonitor.drivers` use it) and above
:mod:`kapmonitor.driver_api`. What does not: GATT byte layouts (:mod:`kapmonitor.codecs.gatt`
and friends), the ``scan``/``pair`` command line (:mod:`kapmonitor.cli_ble`), and any simulated
radio (the simulators plug one in through the ``kapmonitor.ble_radios`` entry point).
"""
