"""The platform's business: plans, shop subscriptions, monthly invoices, dunning."""
