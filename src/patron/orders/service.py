"""Product, order and refund upserts: idempotent by external id, bulk-first, never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from patron.customers.models import TouchpointKind
from patron.customers.repository import insert_touchpoints
from patron.customers.schemas import CustomerIn
from patron.customers.service import customers
from patron.errors import NotFound
from patron.kit.bulk import RecordResult, fill_superseded
from patron.kit.clock import utcnow
from patron.kit.hashing import payload_hash
from patron.kit.money import from_minor, to_minor
from patron.loyalty import orders as order_points
from patron.orders import repository as repo
from patron.orders.domain import (
    LineState,
    OrderContent,
    RefundError,
    RefundRequest,
    TransitionError,
    content_differences,
    next_status,
    plan_refund,
)
from patron.orders.models import Order, OrderStatus, Refund, RefundState
from patron.orders.schemas import (
    LineOut,
    OrderIn,
    OrderMinor,
    OrderOut,
    ProductIn,
    ProductOut,
    RefundIn,
    RefundOut,
)
from patron.stores.models import Store

_TIMESTAMPS = ("paid_at", "fulfilled_at", "delivered_at", "cancelled_at")


def _rounds(external_ids: Sequence[str]) -> list[list[int]]:
    """Split a batch so each round holds an external id at most once, in arrival order."""
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for index, ext in enumerate(external_ids):
        n = seen.get(ext, 0)
        seen[ext] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(index)
    return rounds


def _error(
    index: int, ext: str, message: str, code: Literal["invalid", "conflict"] = "conflict"
) -> RecordResult:
    return RecordResult(index=index, external_id=ext, status="error", error=message, code=code)


class ProductService:
    def upsert_many(
        self,
        session: Session,
        store: Store,
        records: Sequence[ProductIn],
        now: datetime | None = None,
    ) -> list[RecordResult]:
        """Upsert products by sku; a changed body replaces the product (last one wins)."""
        now = now or utcnow()
        latest = {r.sku: i for i, r in enumerate(records)}
        live = [(i, records[i]) for i in sorted(latest.values())]
        digests = {r.sku: payload_hash(r.model_dump(mode="json")) for _, r in live}
        existing = repo.product_states(session, store.id, [r.sku for _, r in live])

        def fields(r: ProductIn) -> dict[str, Any]:
            return {
                "name": r.name,
                "category": r.category,
                "currency": r.currency,
                "price_minor": to_minor(r.price, r.currency),
                "payload_hash": digests[r.sku],
                "updated_at": now,
            }

        new = [
            {"store_id": store.id, "sku": r.sku, "created_at": now, **fields(r)}
            for _, r in live
            if r.sku not in existing
        ]
        created = repo.insert_products(session, new)
        raced = [row["sku"] for row in new if row["sku"] not in created]
        existing.update(repo.product_states(session, store.id, raced) if raced else {})
        results: list[RecordResult | None] = [None] * len(records)
        updates = []
        for index, record in live:
            if record.sku in created:
                results[index] = RecordResult(
                    index=index, external_id=record.sku, status="created", id=created[record.sku]
                )
                continue
            pid, digest = existing[record.sku]
            if digest == digests[record.sku]:
                results[index] = RecordResult(
                    index=index, external_id=record.sku, status="unchanged", id=pid
                )
            else:
                updates.append({"id": pid, **fields(record)})
                results[index] = RecordResult(
                    index=index, external_id=record.sku, status="updated", id=pid
                )
        repo.update_products(session, updates)
        return fill_superseded(results, [latest[r.sku] for r in records])

    def read(self, session: Session, store: Store, sku: str) -> ProductOut:
        product = repo.get_product(session, store.id, sku)
        if product is None:
            raise NotFound(f"No product with sku {sku!r} in this store.")
        return ProductOut(
            id=product.id,
            sku=product.sku,
            name=product.name,
            category=product.category,
            currency=product.currency,
            price=from_minor(product.price_minor, product.currency),
        )


class OrderService:
    def upsert_many(
        self,
        session: Session,
        store: Store,
        records: Sequence[OrderIn],
        *,
        stale_ok: bool = False,
        now: datetime | None = None,
    ) -> list[RecordResult]:
        """Upsert orders by external id.

        The same body again changes nothing. A later body may advance the status and
        fill its timestamps; one that changes the customer, currency, lines, amounts or
        placement time is a conflict (refunds are how amounts change). An older status
        arriving late is a conflict, or a no-op when ``stale_ok`` (webhooks arrive out
        of order).
        """
        now = now or utcnow()
        results: list[RecordResult | None] = [None] * len(records)
        embedded: dict[str, CustomerIn] = {
            r.customer.external_id: r.customer for r in records if r.customer is not None
        }
        if embedded:
            customers.merge_many(session, store, list(embedded.values()), now)
        customer_ids = customers.ensure(
            session, store, [r.customer_external_id for r in records], now
        )
        for round_indexes in _rounds([r.external_id for r in records]):
            self._upsert_round(
                session, store, records, round_indexes, customer_ids, results, stale_ok, now
            )
        # Points: delivered orders earn, cancelled ones give back (after our own writes).
        changed = [r.id for r in results if r and r.id and r.status in ("created", "updated")]
        order_points.on_orders_changed(session, store, changed, now)
        return [r for r in results if r is not None]

    def _upsert_round(
        self,
        session: Session,
        store: Store,
        records: Sequence[OrderIn],
        indexes: list[int],
        customer_ids: dict[str, int],
        results: list[RecordResult | None],
        stale_ok: bool,
        now: datetime,
    ) -> None:
        batch = [(i, records[i]) for i in indexes]
        bodies = {r.external_id: r.model_dump(mode="json") for _, r in batch}
        digests = {ext: payload_hash(body) for ext, body in bodies.items()}
        existing = repo.order_states(session, store.id, [r.external_id for _, r in batch])

        new_rows: list[dict[str, Any]] = []
        minors: dict[str, OrderMinor] = {}
        for _, r in batch:
            if r.external_id in existing:
                continue
            m = minors[r.external_id] = r.minor()
            new_rows.append(
                {
                    "store_id": store.id,
                    "external_id": r.external_id,
                    "customer_id": customer_ids[r.customer_external_id],
                    "status": r.status.value,
                    "channel": r.channel,
                    "currency": r.currency,
                    "discount_code": r.discount_code,
                    "subtotal_minor": m.subtotal,
                    "discount_minor": m.discount,
                    "shipping_minor": m.shipping,
                    "tax_minor": m.tax,
                    "total_minor": m.total,
                    "refunded_minor": 0,
                    "placed_at": r.placed_at,
                    "paid_at": r.paid_at,
                    "fulfilled_at": r.fulfilled_at,
                    "delivered_at": r.delivered_at,
                    "cancelled_at": r.cancelled_at,
                    "payload_hash": digests[r.external_id],
                    "created_at": now,
                    "updated_at": now,
                }
            )
        created = repo.insert_orders(session, new_rows)
        raced = [row["external_id"] for row in new_rows if row["external_id"] not in created]
        if raced:
            existing.update(repo.order_states(session, store.id, raced))

        lines, touchpoints, updates = [], [], []
        for index, r in batch:
            ext = r.external_id
            if ext in created:
                oid = created[ext]
                for n, (line, (unit, disc, total)) in enumerate(
                    zip(r.lines, minors[ext].lines, strict=True)
                ):
                    lines.append(
                        {
                            "order_id": oid,
                            "line_no": n,
                            "external_id": line.external_id,
                            "sku": line.sku,
                            "name": line.name,
                            "category": line.category,
                            "quantity": line.quantity,
                            "unit_price_minor": unit,
                            "discount_minor": disc,
                            "total_minor": total,
                            "refunded_quantity": 0,
                            "refunded_minor": 0,
                        }
                    )
                touchpoints.append(
                    {
                        "store_id": store.id,
                        "customer_id": customer_ids[r.customer_external_id],
                        "kind": TouchpointKind.order.value,
                        "occurred_at": r.placed_at,
                        "ref": ext,
                        "data": {
                            "total": str(r.total or from_minor(minors[ext].total, r.currency)),
                            "currency": r.currency,
                        },
                    }
                )
                results[index] = RecordResult(
                    index=index, external_id=ext, status="created", id=oid
                )
                continue
            state = existing[ext]
            if state.payload_hash == digests[ext]:
                results[index] = RecordResult(
                    index=index, external_id=ext, status="unchanged", id=state.id
                )
                continue
            differences = self._differences(session, state, r, customer_ids)
            if differences:
                results[index] = _error(
                    index,
                    ext,
                    f"order already recorded with a different {', '.join(differences)}; "
                    "these cannot change (send a refund to change amounts)",
                )
                continue
            try:
                status = next_status(state.status, r.status)
            except TransitionError as exc:
                results[index] = _error(index, ext, str(exc))
                continue
            if status is None and not stale_ok:
                results[index] = _error(
                    index,
                    ext,
                    (
                        f"order is already {state.status.value}; it cannot go back to "
                        f"{r.status.value}"
                    ),
                )
                continue
            row: dict[str, Any] = {
                "id": state.id,
                "status": (status or state.status).value,
                "channel": r.channel,
                "discount_code": r.discount_code,
                "payload_hash": digests[ext],
                "updated_at": now,
            }
            row.update({k: getattr(r, k) for k in _TIMESTAMPS})
            if status is None:  # stale: keep what we have, note nothing
                results[index] = RecordResult(
                    index=index, external_id=ext, status="unchanged", id=state.id
                )
                continue
            updates.append(row)
            results[index] = RecordResult(
                index=index, external_id=ext, status="updated", id=state.id
            )
        repo.insert_lines(session, lines)
        insert_touchpoints(session, touchpoints)
        # A later delivery may omit timestamps it sent before: never erase one.
        for row in updates:
            for key in _TIMESTAMPS:
                if row[key] is None:
                    row.pop(key)
        for group in {tuple(sorted(u)) for u in updates}:
            repo.update_orders(session, [u for u in updates if tuple(sorted(u)) == group])
        if created:
            refunds.apply_pending(
                session, store, repo.pending_refund_order_ids(session, store.id, list(created))
            )

    def _differences(
        self,
        session: Session,
        state: repo.OrderState,
        record: OrderIn,
        customer_ids: dict[str, int],
    ) -> list[str]:
        order = session.get(Order, state.id)
        assert order is not None
        lines = repo.lines_of(session, [order.id])[order.id]
        m = record.minor()
        stored = OrderContent(
            order.customer_id,
            order.currency,
            order.placed_at,
            order.discount_minor,
            order.shipping_minor,
            order.tax_minor,
            order.total_minor,
            tuple(
                (ln.external_id, ln.sku, ln.quantity, ln.unit_price_minor, ln.discount_minor)
                for ln in lines
            ),
        )
        incoming = OrderContent(
            customer_ids[record.customer_external_id],
            record.currency,
            record.placed_at,
            m.discount,
            m.shipping,
            m.tax,
            m.total,
            tuple(
                (ln.external_id, ln.sku, ln.quantity, unit, disc)
                for ln, (unit, disc, _) in zip(record.lines, m.lines, strict=True)
            ),
        )
        return content_differences(stored, incoming)

    def read(self, session: Session, store: Store, external_id: str) -> OrderOut:
        order = repo.get_order(session, store.id, external_id)
        if order is None:
            raise NotFound(f"No order with external id {external_id!r} in this store.")
        return self.out_many(session, [order])[0]

    def out_many(self, session: Session, orders: Sequence[Order]) -> list[OrderOut]:
        lines = repo.lines_of(session, [o.id for o in orders])
        cust = repo.customer_external_ids(session, {o.customer_id for o in orders})
        out = []
        for o in orders:
            c = o.currency
            out.append(
                OrderOut(
                    id=o.id,
                    external_id=o.external_id,
                    customer_external_id=cust[o.customer_id],
                    status=o.status,
                    channel=o.channel,
                    currency=c,
                    discount_code=o.discount_code,
                    subtotal=from_minor(o.subtotal_minor, c),
                    discount_total=from_minor(o.discount_minor, c),
                    shipping_total=from_minor(o.shipping_minor, c),
                    tax_total=from_minor(o.tax_minor, c),
                    total=from_minor(o.total_minor, c),
                    refunded_total=from_minor(o.refunded_minor, c),
                    placed_at=o.placed_at,
                    paid_at=o.paid_at,
                    fulfilled_at=o.fulfilled_at,
                    delivered_at=o.delivered_at,
                    cancelled_at=o.cancelled_at,
                    lines=[
                        LineOut(
                            line_no=ln.line_no,
                            external_id=ln.external_id,
                            sku=ln.sku,
                            name=ln.name,
                            category=ln.category,
                            quantity=ln.quantity,
                            unit_price=from_minor(ln.unit_price_minor, c),
                            discount=from_minor(ln.discount_minor, c),
                            total=from_minor(ln.total_minor, c),
                            refunded_quantity=ln.refunded_quantity,
                            refunded=from_minor(ln.refunded_minor, c),
                        )
                        for ln in lines[o.id]
                    ],
                )
            )
        return out


class RefundService:
    def upsert_many(
        self,
        session: Session,
        store: Store,
        records: Sequence[RefundIn],
        now: datetime | None = None,
    ) -> list[RecordResult]:
        """Record refunds exactly once each. A refund is immutable: a different body for a
        known external id is a conflict. A refund for an order not yet received waits for
        it (status ``pending``) and is applied when the order lands."""
        now = now or utcnow()
        return [self._upsert_one(session, store, i, r, now) for i, r in enumerate(records)]

    def _upsert_one(
        self, session: Session, store: Store, index: int, record: RefundIn, now: datetime
    ) -> RecordResult:
        ext = record.external_id
        body = record.model_dump(mode="json")
        digest = payload_hash(body)
        order = repo.get_order(session, store.id, record.order_external_id, for_update=True)
        existing = repo.get_refund(session, store.id, ext)
        if existing is not None:
            if existing.payload_hash == digest:
                pending = existing.state == RefundState.pending_order
                return RecordResult(
                    index=index,
                    external_id=ext,
                    status="pending" if pending else "unchanged",
                    id=existing.id,
                )
            return _error(
                index, ext, "refund already recorded with a different body; refunds are immutable"
            )
        if order is None:
            row = {
                "store_id": store.id,
                "external_id": ext,
                "order_external_id": record.order_external_id,
                "state": RefundState.pending_order.value,
                "amount_minor": 0,
                "currency": store.currency,
                "reason": record.reason,
                "refunded_at": record.refunded_at,
                "lines": [],
                "payload": body,
                "payload_hash": digest,
                "created_at": now,
            }
            repo.insert_pending_refund(session, row)
            return RecordResult(index=index, external_id=ext, status="pending")
        try:
            refund = self._apply(session, store, order, record, body, digest, now)
        except RefundError as exc:
            return _error(index, ext, str(exc), "invalid")
        return RecordResult(index=index, external_id=ext, status="created", id=refund.id)

    def _apply(
        self,
        session: Session,
        store: Store,
        order: Order,
        record: RefundIn,
        body: dict[str, Any],
        digest: str,
        now: datetime,
        refund: Refund | None = None,
    ) -> Refund:
        lines = repo.lines_of(session, [order.id])[order.id]
        amount = None if record.amount is None else to_minor(record.amount, order.currency)
        plan = plan_refund(
            [
                LineState(
                    ln.line_no,
                    ln.external_id,
                    ln.sku,
                    ln.quantity,
                    ln.total_minor,
                    ln.refunded_quantity,
                    ln.refunded_minor,
                )
                for ln in lines
            ],
            order.total_minor,
            order.refunded_minor,
            RefundRequest([(x.line_external_id, x.sku, x.quantity) for x in record.lines], amount),
        )
        by_no = {ln.line_no: ln for ln in lines}
        for line_no, (qty, minor) in plan.lines.items():
            by_no[line_no].refunded_quantity += qty
            by_no[line_no].refunded_minor += minor
        order.refunded_minor += plan.amount_minor
        if order.refunded_minor == order.total_minor and order.status != OrderStatus.cancelled:
            order.status = OrderStatus.refunded
        order.updated_at = now
        fields = dict(
            state=RefundState.applied,
            order_id=order.id,
            amount_minor=plan.amount_minor,
            currency=order.currency,
            lines=[
                {"line": n, "quantity": q, "amount_minor": a}
                for n, (q, a) in sorted(plan.lines.items())
            ],
        )
        if refund is None:
            refund = Refund(
                store_id=store.id,
                external_id=record.external_id,
                order_external_id=record.order_external_id,
                reason=record.reason,
                refunded_at=record.refunded_at,
                payload=body,
                payload_hash=digest,
                created_at=now,
                **fields,
            )
            session.add(refund)
        else:
            for key, value in fields.items():
                setattr(refund, key, value)
        session.flush()
        insert_touchpoints(
            session,
            [
                {
                    "store_id": store.id,
                    "customer_id": order.customer_id,
                    "kind": TouchpointKind.refund.value,
                    "occurred_at": record.refunded_at,
                    "ref": record.external_id,
                    "data": {
                        "order": order.external_id,
                        "currency": order.currency,
                        "amount": str(from_minor(plan.amount_minor, order.currency)),
                    },
                }
            ],
        )
        order_points.on_refund(session, store, order, record.external_id, plan.amount_minor, now)
        return refund

    def apply_pending(self, session: Session, store: Store, order_external_ids: set[str]) -> None:
        """Apply refunds that arrived before their order; reject those that do not fit."""
        now = utcnow()
        for order_ext in sorted(order_external_ids):
            order = repo.get_order(session, store.id, order_ext, for_update=True)
            assert order is not None
            for pending in repo.pending_refunds(session, store.id, order_ext):
                record = RefundIn.model_validate(pending.payload)
                try:
                    self._apply(
                        session,
                        store,
                        order,
                        record,
                        pending.payload,
                        pending.payload_hash,
                        now,
                        refund=pending,
                    )
                except RefundError as exc:
                    pending.state = RefundState.rejected
                    pending.rejection = str(exc)[:255]
        session.flush()

    def read(self, session: Session, store: Store, external_id: str) -> RefundOut:
        refund = repo.get_refund(session, store.id, external_id)
        if refund is None:
            raise NotFound(f"No refund with external id {external_id!r} in this store.")
        return RefundOut(
            id=refund.id,
            external_id=refund.external_id,
            order_external_id=refund.order_external_id,
            state=refund.state.value,
            amount=from_minor(refund.amount_minor, refund.currency),
            currency=refund.currency,
            reason=refund.reason,
            rejection=refund.rejection,
            refunded_at=refund.refunded_at,
            lines=refund.lines,
        )


products = ProductService()
orders = OrderService()
refunds = RefundService()
