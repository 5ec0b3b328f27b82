"""Opens and clicks of HTML mail, and the counts a campaign's results are made of.

**Instrumenting.** When an HTML mail is queued, every ``http``/``https`` link of an
``<a href>`` (but the unsubscribe link, which must keep working on its own and must
never be counted as a click) becomes ``{base}/t/c/<token>``, and a 1×1 GIF
``{base}/t/o/<token>.gif`` is added before ``</body>``. The original URLs are stored on
the message (``campaign_messages.links``) by index.

**Tokens.** A click token is ``<message id>.<link index>.<signature>``, an open token
``<message id>.<signature>``: the signature is 22 base64url characters of HMAC-SHA256
under the store's ``signing_secret`` over ``track:click:<id>:<index>`` (or
``track:open:<id>``), compared in constant time. A token cannot be forged for another
message or link, and ids cannot be enumerated: a wrong signature is a 404.

**No open redirect.** ``/t/c/<token>`` redirects (302) only to the URL stored for that
message and index; nothing in the request chooses the target.

**Machines.** A ``HEAD`` request (link prefetchers) is answered and not recorded. An open
or click within ``MACHINE_SECONDS`` (2 s) of the message being sent, with no user agent
or a user agent of a known mail proxy or link scanner (``MACHINE_AGENTS``), is recorded
with ``machine = true`` and does not count. Apple Mail Privacy Protection fetches with a
generic agent and cannot be told apart: its opens count (treat open rates as an upper
bound; clicks are the better signal). Every event is kept (at most ``MAX_EVENTS`` per
message and kind); counts take *messages*: the first human open is what counts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from patron.auth import SessionDep
from patron.campaigns.consent import sign as _sign
from patron.campaigns.models import CampaignEvent, EventKind, MessageStatus, OutboxMessage
from patron.errors import NotFound
from patron.kit.clock import as_utc_or_now
from patron.stores.models import Store

SIG_CHARS = 22
MACHINE_SECONDS = 2
MAX_EVENTS = 100
MACHINE_AGENTS = re.compile(
    r"GoogleImageProxy|ggpht\.com|YahooMailProxy|Yahoo! Slurp|Outlook-iOS-Android|"
    r"BingPreview|Barracuda|Mimecast|Proofpoint|SafeLinks|ZScaler|python-requests|"
    r"curl/|Wget/|Go-http-client|bot\b|spider|crawler",
    re.IGNORECASE,
)
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_CLICK = re.compile(r"^([1-9][0-9]{0,17})\.([0-9]{1,4})\.([A-Za-z0-9_-]{22})$")
_OPEN = re.compile(r"^([1-9][0-9]{0,17})\.([A-Za-z0-9_-]{22})$")
# The smallest transparent GIF (1×1).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def click_token(store: Store, message_id: int, index: int) -> str:
    return f"{message_id}.{index}.{_sign(store, f'track:click:{message_id}:{index}')}"


def open_token(store: Store, message_id: int) -> str:
    return f"{message_id}.{_sign(store, f'track:open:{message_id}')}"


def instrument(
    body_html: str, store: Store, message_id: int, base_url: str, *, skip: tuple[str, ...] = ()
) -> tuple[str, list[str]]:
    """The HTML with its http(s) links rewritten to ``/t/c/<token>`` and an open pixel,
    and the original URLs by index. Links starting with one of ``skip`` (the
    unsubscribe link) are left alone."""
    base = base_url.rstrip("/")
    links: list[str] = []

    def rewrite(m: re.Match[str]) -> str:
        url = html.unescape(m.group(3)).strip()
        if not re.match(r"^https?://", url, re.IGNORECASE) or any(url.startswith(s) for s in skip):
            return m.group(0)
        if len(url) > 2048:
            return m.group(0)
        links.append(url)
        token = click_token(store, message_id, len(links) - 1)
        return f"{m.group(1)}{m.group(2)}{base}/t/c/{token}{m.group(2)}"

    out = _HREF.sub(rewrite, body_html)
    pixel = (
        f'<img src="{base}/t/o/{open_token(store, message_id)}.gif" width="1" height="1" '
        'alt="" style="border:0;width:1px;height:1px">'
    )
    at = out.lower().rfind("</body>")
    out = out[:at] + pixel + "\n" + out[at:] if at >= 0 else out + pixel
    return out, links


# -- recording ------------------------------------------------------------------------------


def _message(session: Session, message_id: int) -> tuple[OutboxMessage, Store] | None:
    msg = session.get(OutboxMessage, message_id)
    store = session.get(Store, msg.store_id) if msg is not None else None
    return (msg, store) if msg is not None and store is not None else None


def is_machine(msg: OutboxMessage, user_agent: str | None, at: datetime) -> bool:
    """An open or click by a proxy or scanner right after sending (module docstring)."""
    if msg.sent_at is None or at - msg.sent_at > timedelta(seconds=MACHINE_SECONDS):
        return False
    return not user_agent or MACHINE_AGENTS.search(user_agent) is not None


def ua_hash(user_agent: str | None) -> str | None:
    return hashlib.sha256(user_agent.encode()).hexdigest()[:16] if user_agent else None


def add_event(
    session: Session,
    msg: OutboxMessage,
    kind: EventKind,
    at: datetime,
    *,
    url: str | None = None,
    permanent: bool | None = None,
    machine: bool = False,
    detail: str | None = None,
    user_agent: str | None = None,
) -> CampaignEvent | None:
    """Record an event of a message (None when it already has ``MAX_EVENTS`` of the kind:
    a pixel fetched in a loop must not fill the table)."""
    seen = session.scalar(
        select(func.count())
        .select_from(CampaignEvent)
        .where(CampaignEvent.message_id == msg.id, CampaignEvent.kind == kind)
    )
    if (seen or 0) >= MAX_EVENTS:
        return None
    event = CampaignEvent(
        store_id=msg.store_id,
        message_id=msg.id,
        kind=kind,
        url=url[:2048] if url else None,
        permanent=permanent,
        machine=machine,
        detail=detail[:255] if detail else None,
        ua_hash=ua_hash(user_agent),
        occurred_at=at,
    )
    session.add(event)
    session.flush()
    return event


def record_open(
    session: Session,
    token: str,
    user_agent: str | None,
    now: datetime | None = None,
    *,
    record: bool = True,
) -> bool:
    """Record the open of a pixel token (unless ``record`` is false); 404 for an unknown
    or forged one. Returns whether it counted (recorded, not a machine)."""
    match = _OPEN.match(token) if len(token) <= 64 else None
    found = _message(session, int(match.group(1))) if match else None
    if match is None or found is None:
        raise NotFound("Unknown tracking link.")
    msg, store = found
    if not hmac.compare_digest(_sign(store, f"track:open:{msg.id}"), match.group(2)):
        raise NotFound("Unknown tracking link.")
    if not record:
        return False
    now = as_utc_or_now(now)
    machine = is_machine(msg, user_agent, now)
    add_event(session, msg, EventKind.open, now, machine=machine, user_agent=user_agent)
    return not machine


def resolve_click(
    session: Session,
    token: str,
    user_agent: str | None,
    now: datetime | None = None,
    *,
    record: bool = True,
) -> str:
    """The URL stored for a click token (404 for an unknown or forged one, or a message
    whose links were erased), recording the click unless ``record`` is false."""
    match = _CLICK.match(token) if len(token) <= 64 else None
    found = _message(session, int(match.group(1))) if match else None
    if match is None or found is None:
        raise NotFound("Unknown tracking link.")
    msg, store = found
    index = int(match.group(2))
    expected = _sign(store, f"track:click:{msg.id}:{index}")
    links = msg.links or []
    if not hmac.compare_digest(expected, match.group(3)) or index >= len(links):
        raise NotFound("Unknown tracking link.")
    url = links[index]
    if record:
        now = as_utc_or_now(now)
        machine = is_machine(msg, user_agent, now)
        add_event(
            session, msg, EventKind.click, now, url=url, machine=machine, user_agent=user_agent
        )
    return url


# -- results --------------------------------------------------------------------------------

COUNT_KEYS = (
    "sent",
    "delivered_failed",
    "suppressed",
    "opened",
    "clicked",
    "bounced",
    "complained",
)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def counts_by_key_prefix(session: Session, store_id: int, prefix: str) -> dict[str, int]:
    """Results of the messages whose outbox key starts with ``prefix`` (a campaign's keys
    are ``campaign:<id>:<customer id>``): ``sent``, ``delivered_failed``, ``suppressed``
    (by status), and the messages ``opened`` (a human open or click), ``clicked`` (a
    human click), ``bounced`` (a hard bounce), ``complained``. Every key is present."""
    messages = select(OutboxMessage.id).where(
        OutboxMessage.store_id == store_id,
        OutboxMessage.key.like(_like_prefix(prefix), escape="\\"),
    )
    by_status = dict(
        session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.id.in_(messages))
            .group_by(OutboxMessage.status)
        ).all()
    )

    def messages_with(*kinds: EventKind, **where: bool) -> int:
        query = select(func.count(distinct(CampaignEvent.message_id))).where(
            CampaignEvent.store_id == store_id,
            CampaignEvent.message_id.in_(messages),
            CampaignEvent.kind.in_(kinds),
        )
        for column, value in where.items():
            query = query.where(getattr(CampaignEvent, column).is_(value))
        return int(session.scalar(query) or 0)

    return {
        "sent": int(by_status.get(MessageStatus.sent, 0)),
        "delivered_failed": int(by_status.get(MessageStatus.failed, 0)),
        "suppressed": int(by_status.get(MessageStatus.suppressed, 0)),
        "opened": messages_with(EventKind.open, EventKind.click, machine=False),
        "clicked": messages_with(EventKind.click, machine=False),
        "bounced": messages_with(EventKind.bounce, permanent=True),
        "complained": messages_with(EventKind.complaint),
    }


# -- public routes (the signed token is the credential) -------------------------------------

router = APIRouter(include_in_schema=False)
Token = Annotated[str, Path(max_length=64)]


@router.api_route("/t/o/{token}.gif", methods=["GET", "HEAD"])
def open_pixel(token: Token, request: Request, session: SessionDep) -> Response:
    """The open pixel: a 1×1 GIF; the open is recorded (HEAD is not)."""
    record_open(session, token, request.headers.get("user-agent"), record=request.method == "GET")
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.api_route("/t/c/{token}", methods=["GET", "HEAD"])
def click(token: Token, request: Request, session: SessionDep) -> RedirectResponse:
    """A tracked link: 302 to the URL stored for this message and link (HEAD: not
    recorded)."""
    url = resolve_click(
        session, token, request.headers.get("user-agent"), record=request.method == "GET"
    )
    return RedirectResponse(url, status_code=302, headers=NO_STORE)
