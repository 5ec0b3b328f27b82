"""Getting store data in: REST upserts and bulk, file imports, platform webhooks."""
