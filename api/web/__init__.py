"""The web UI, served by the API itself: a page shell per view and small ES modules.

``add_web_routes(app)`` serves ``/`` (→ ``/chat``), ``/sign-in``, ``/chat``, ``/documents``,
``/approvals``, ``/settings`` and ``/admin`` (one HTML shell; the view's module renders it
from the REST API with the sign-in cookie), the page assets under :data:`ASSETS_PATH`, and
the two browser libraries (marked, DOMPurify) from the npm packages ``make install`` puts in
``node_modules/`` (pinned in package.json / package-lock.json; nothing comes from a CDN).
Every response but the API docs pages carries :data:`CONTENT_SECURITY_POLICY` (no inline
script or style anywhere). See docs/web.md.
"""

from api.web.pages import ASSETS_PATH, CONTENT_SECURITY_POLICY, SecurityHeadersMiddleware, add_web_routes

__all__ = ["ASSETS_PATH", "CONTENT_SECURITY_POLICY", "SecurityHeadersMiddleware", "add_web_routes"]
