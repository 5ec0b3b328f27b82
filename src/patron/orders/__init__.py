"""Products, orders with lines and their lifecycle, and refunds."""
