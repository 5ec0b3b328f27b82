"""Rewards and redemption: the catalogue, redeeming points, coupons, checkout points."""
