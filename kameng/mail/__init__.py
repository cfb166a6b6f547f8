"""Mail: SMTP when MAIL_SERVER is set, otherwise an outbox table readable in the consoles."""
