"""The catalog: supply products, shop products, markup rules, price levels, coupons and pricing."""
