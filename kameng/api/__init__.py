"""The REST API v1: signed requests with API keys, agents buying from their wallet, supply
between Kameng shops."""
