"""Customer upserts: idempotent by external id, in bulk, never committing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from patron.customers import repository as repo
from patron.customers.models import Consent, Customer, TouchpointKind
from patron.customers.schemas import ConsentOut, CustomerIn, CustomerOut
from patron.errors import NotFound
from patron.kit.bulk import RecordResult, fill_superseded
from patron.kit.clock import utcnow
from patron.kit.hashing import payload_hash
from patron.stores.models import Store

PROFILE_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "birthday",
    "locale",
    "timezone",
    "attributes",
    "flagged",
    "flagged_reason",
)


def _profile(record: CustomerIn) -> dict[str, Any]:
    return {field: getattr(record, field) for field in PROFILE_FIELDS}


class CustomerService:
    def upsert_many(
        self,
        session: Session,
        store: Store,
        records: Sequence[CustomerIn],
        now: datetime | None = None,
    ) -> list[RecordResult]:
        """Upsert customers. Same body again: unchanged. New body: the profile is replaced.

        Records with the same external id in one batch are applied in order (last wins).
        """
        now = now or utcnow()
        results: list[RecordResult | None] = [None] * len(records)
        latest: dict[str, int] = {}
        for index, record in enumerate(records):
            latest[record.external_id] = index
        live = [(i, records[i]) for i in sorted(latest.values())]
        digests = {r.external_id: payload_hash(r.model_dump(mode="json")) for _, r in live}
        existing = repo.states_by_external_id(session, store.id, [r.external_id for _, r in live])

        new_rows = [
            {
                "store_id": store.id,
                "external_id": r.external_id,
                **_profile(r),
                "traits": {},
                "is_stub": False,
                "payload_hash": digests[r.external_id],
                "created_at": r.created_at or now,
                "updated_at": now,
            }
            for _, r in live
            if r.external_id not in existing
        ]
        created = repo.insert_new(session, new_rows)
        # Lost a race with a concurrent insert: treat those as existing rows.
        raced = [row["external_id"] for row in new_rows if row["external_id"] not in created]
        if raced:
            existing.update(repo.states_by_external_id(session, store.id, raced))

        updates: list[dict[str, Any]] = []
        consent_targets: list[tuple[int, CustomerIn]] = []
        touchpoints: list[dict[str, Any]] = []
        for index, record in live:
            ext = record.external_id
            if ext in created:
                cid = created[ext]
                results[index] = RecordResult(
                    index=index, external_id=ext, status="created", id=cid
                )
                touchpoints.append(
                    {
                        "store_id": store.id,
                        "customer_id": cid,
                        "kind": TouchpointKind.signup.value,
                        "occurred_at": record.created_at or now,
                        "ref": ext,
                        "data": {},
                    }
                )
                consent_targets.append((cid, record))
                continue
            cid, old_digest = existing[ext]
            if old_digest == digests[ext]:
                results[index] = RecordResult(
                    index=index, external_id=ext, status="unchanged", id=cid
                )
                continue
            row = {
                "id": cid,
                **_profile(record),
                "is_stub": False,
                "payload_hash": digests[ext],
                "updated_at": now,
            }
            if record.created_at is not None:
                row["created_at"] = record.created_at
            updates.append(row)
            consent_targets.append((cid, record))
            results[index] = RecordResult(index=index, external_id=ext, status="updated", id=cid)

        # Rows with and without created_at have different columns: update in two groups.
        repo.update_profiles(session, [u for u in updates if "created_at" in u])
        repo.update_profiles(session, [u for u in updates if "created_at" not in u])
        touchpoints += self._apply_consents(session, store, consent_targets, now)
        repo.insert_touchpoints(session, touchpoints)
        return fill_superseded(results, [latest[r.external_id] for r in records])

    def _apply_consents(
        self, session: Session, store: Store, targets: list[tuple[int, CustomerIn]], now: datetime
    ) -> list[dict[str, Any]]:
        targets = [(cid, r) for cid, r in targets if r.consents]
        if not targets:
            return []
        current = repo.consents_of(session, [cid for cid, _ in targets])
        touchpoints: list[dict[str, Any]] = []
        for cid, record in targets:
            for consent in record.consents:
                key = (cid, consent.channel.value)
                row = current.get(key)
                if row is not None and row.granted == consent.granted:
                    continue  # unchanged: keep the original source and time
                at = consent.recorded_at or now
                if row is None:
                    repo.add_all(
                        session,
                        [
                            Consent(
                                store_id=store.id,
                                customer_id=cid,
                                channel=consent.channel,
                                granted=consent.granted,
                                source=consent.source,
                                recorded_at=at,
                            )
                        ],
                    )
                else:
                    row.granted, row.source, row.recorded_at = consent.granted, consent.source, at
                touchpoints.append(
                    {
                        "store_id": store.id,
                        "customer_id": cid,
                        "kind": TouchpointKind.consent.value,
                        "occurred_at": at,
                        "ref": consent.channel.value,
                        "data": {"granted": consent.granted, "source": consent.source},
                    }
                )
        session.flush()
        return touchpoints

    def merge_many(
        self,
        session: Session,
        store: Store,
        records: Sequence[CustomerIn],
        now: datetime | None = None,
    ) -> None:
        """Fill in profiles from what an order carries, never erasing what is known.

        Platforms embed a partial profile in each order; unlike a customer upsert, only
        the fields it actually gives are written. A profile changed this way forgets its
        payload hash, so the store's next full upsert of that customer is applied.
        """
        now = now or utcnow()
        known = repo.by_external_ids(session, store.id, [r.external_id for r in records])
        fresh = [r for r in records if r.external_id not in known]
        if fresh:
            self.upsert_many(session, store, fresh, now)
        for record in records:
            customer = known.get(record.external_id)
            if customer is None:
                continue
            given = {
                field: getattr(record, field)
                for field in PROFILE_FIELDS
                if field in record.model_fields_set and getattr(record, field) not in (None, {})
            }
            changed = {k: v for k, v in given.items() if getattr(customer, k) != v}
            if changed or customer.is_stub:
                for key, value in changed.items():
                    setattr(customer, key, value)
                customer.is_stub = False
                customer.payload_hash = None
                customer.updated_at = now
        session.flush()

    def ensure(
        self,
        session: Session,
        store: Store,
        external_ids: Sequence[str],
        now: datetime | None = None,
    ) -> dict[str, int]:
        """Ids of these customers, creating a stub profile for any the store has not sent."""
        now = now or utcnow()
        wanted = list(dict.fromkeys(external_ids))
        ids = {
            ext: cid
            for ext, (cid, _) in repo.states_by_external_id(session, store.id, wanted).items()
        }
        missing = [ext for ext in wanted if ext not in ids]
        if missing:
            ids.update(
                repo.insert_new(
                    session,
                    [
                        {
                            "store_id": store.id,
                            "external_id": ext,
                            "attributes": {},
                            "traits": {},
                            "flagged": False,
                            "is_stub": True,
                            "payload_hash": None,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for ext in missing
                    ],
                )
            )
            still = [ext for ext in missing if ext not in ids]
            if still:  # inserted concurrently by another writer
                ids.update(
                    {
                        ext: cid
                        for ext, (cid, _) in repo.states_by_external_id(
                            session, store.id, still
                        ).items()
                    }
                )
        return ids

    def read(self, session: Session, store: Store, external_id: str) -> CustomerOut:
        customer = repo.get_by_external_id(session, store.id, external_id)
        if customer is None:
            raise NotFound(f"No customer with external id {external_id!r} in this store.")
        return self.out(session, customer)

    def out(self, session: Session, customer: Customer) -> CustomerOut:
        consents = repo.consents_of(session, [customer.id]).values()
        result = CustomerOut.model_validate(customer)
        result.consents = [
            ConsentOut(
                channel=c.channel, granted=c.granted, source=c.source, recorded_at=c.recorded_at
            )
            for c in consents
        ]
        return result


customers = CustomerService()
