"""After-sales: a buyer's ticket about a delivered order, answered and resolved by the shop."""
