"""The loyalty programme: the append-only points ledger (积分 and 成长值) and, on it,
earning rules, tiers, rewards, refunds and referrals."""
