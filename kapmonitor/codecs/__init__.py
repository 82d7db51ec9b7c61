"""Sans-IO protocol codecs (see base.py for the contract)."""
