"""Permission marketing (许可营销): consent, double opt-in, unsubscribe, suppression, and
a customer's data export and erasure (PIPL / GDPR)."""
