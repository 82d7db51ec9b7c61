"""Device drivers, one module a device family, each exporting ``DRIVERS`` (the contract is in
:mod:`kapmonitor.driver_api`; :mod:`kapmonitor.drivers.registry` finds them, and drivers from
other packages through the ``kapmonitor.drivers`` entry-point group).

What belongs here is the glue between a transport (BLE, serial, MLLP) and a codec for one kind
of device: connect, subscribe or poll, feed the decoder, yield statuses and measurements. What
does not: reconnection, backoff and staleness (the supervisor's), byte layouts (the codecs'),
and anything about beds, MQTT or alarms.
"""
