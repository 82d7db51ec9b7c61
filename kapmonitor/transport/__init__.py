"""Transports shared by drivers (the serial port / serial-over-LAN pipe lives in ``serial``)."""
