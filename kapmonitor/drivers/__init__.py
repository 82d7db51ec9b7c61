"""Device drivers (see base.py for the contract)."""
