"""Sans-IO protocol codecs: bytes or text in, :class:`~kapmonitor.model.Measurement`,
``Note`` and ``Problem`` values out (the contract is in :mod:`kapmonitor.codecs.base`).

What belongs here is everything about a device protocol that is bytes and meaning: framing,
checksums, field layouts, units and codes, plus the encoders the simulators need beside their
decoders. What does not: sockets, serial ports, BLE, clocks or the event loop (the import
contracts forbid them), and anything about alarms.
"""
