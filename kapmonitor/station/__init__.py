"""The central station (``kapmonitor station``): a web page where clinicians see and hear
every bed's alarms, act on them, and learn when the alarm path itself fails (issue 12).

What belongs here: the station service and nothing the node needs.

- :mod:`.config` — the ``[station]`` TOML, validated like the daemon's;
- :mod:`.topics` — which node topics the station reads and how their names are parsed;
- :mod:`.state` — the pure model rebuilt from the retained topics (beds, nodes, technical
  alarms of the alarm path);
- :mod:`.bridge` — the station's MQTT connection: subscriptions, heartbeat with last will,
  display confirmations, commands with the clinician's identity;
- :mod:`.users` — the user file (argon2 hashes, roles), login sessions, CSRF, rate limits;
- :mod:`.web` — the aiohttp HTTP and WebSocket server;
- :mod:`.cli` — ``kapmonitor station run|adduser|check-config``;
- ``static/`` — the page: plain ES modules, no build chain.
"""
