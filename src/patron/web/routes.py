"""The dashboard pages built with the foundation: overview, customers, programme, staff.
(Other page modules are included by ``patron.app`` themselves.)"""

from __future__ import annotations

from fastapi import APIRouter

from patron.web import customer_pages, overview, programme_pages, staff_pages

router = APIRouter(include_in_schema=False)
router.include_router(overview.router)
router.include_router(customer_pages.router)
router.include_router(programme_pages.router)
router.include_router(staff_pages.router)
