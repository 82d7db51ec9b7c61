"""Transports shared by the drivers: the serial port and serial-over-LAN pipe (``serial``).

What belongs here is moving bytes to and from a device with its line settings, and reporting a
lost port as a typed error; it stands below the drivers and above
:mod:`kapmonitor.driver_api`. What does not: any protocol's framing or meaning (the codecs').
"""
