"""The ledger: accounts, balanced append-only entries and holds (wallets, points, shop funds)."""
