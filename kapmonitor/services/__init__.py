"""Services: parts of the daemon that plug into it through narrow collaborators (ports)."""
