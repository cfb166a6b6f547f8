"""Card codes: import, encryption at rest, stock counts, export; later reservation and sale."""
