"""Security building blocks: password hashing, sessions, logins, rate limits."""
