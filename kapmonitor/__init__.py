"""kapmonitor: vitals bridge and alarm engine for ketamine-assisted psychotherapy sessions."""

__version__ = "0.1.0"
