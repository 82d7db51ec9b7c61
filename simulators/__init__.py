"""Simulators: the physiology model and virtual devices for a clinic without hardware.

This folder installs as ``kapmonitor_simulators``. What belongs here is everything that stands
in for hardware or for a clinic: the patient model, virtual serial/HL7/IntelliVue/BLE devices,
the ``sim`` driver, the simulated BLE radio, the HL7 ORU encoder the virtual monitors send with,
and ``kapmonitor demo``. The product (``kapmonitor``) never imports this package; the pieces that
run inside the daemon plug in through the entry points declared in ``pyproject.toml``
(``kapmonitor.drivers``, ``kapmonitor.ble_radios``, ``kapmonitor.commands``).
"""
