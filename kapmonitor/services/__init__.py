"""Services: the parts of kapmonitor that consume readings and device status and publish
through MQTT, but own neither the devices nor the connection.

What belongs here: one module per service (``alarms`` — the alarm engine's I/O;
``homeassistant`` — Home Assistant discovery; the coming central-station bridge, session
history and remote escalation). A service receives :class:`~kapmonitor.ports.ServicePorts`
(or the few ports it needs) from the daemon, never the daemon itself, and registers its
commands through the :class:`~kapmonitor.ports.CommandRegistry` port.

What does not: device I/O (``kapmonitor.drivers``), the connection (``kapmonitor.mqtt``),
pure logic a service wraps (the alarm engine is ``kapmonitor.alerts``) and the wiring
(``kapmonitor.daemon``, the composition root).
"""
