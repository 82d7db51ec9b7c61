"""Services: parts of the daemon that consume readings, status and alert events through narrow
interfaces (never the Daemon itself) and publish through them."""
