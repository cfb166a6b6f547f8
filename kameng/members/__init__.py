"""A shop's buyers: accounts, levels and points."""
