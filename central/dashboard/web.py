"""What every dashboard page shares: templates, the signed-in administrator, CSRF checks, security headers.

Sessions: a random cookie (`__Host-fedxray_session`: Secure, HttpOnly, SameSite=Strict, Path=/) whose SHA-256 is
the session's key in the store; it ends when idle (Settings.session_idle_seconds) or after 12 hours. Every form
that changes something carries the session's CSRF token; the sign-in form carries a token bound to a short-lived
cookie of its own. API credentials (a bearer header) never open a page.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from central import __version__
from central.dashboard import accounts
from central.db.engine import transaction
from fl.modelfile import INTENDED_USE

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "__Host-fedxray_session"
SIGN_IN_COOKIE = "__Host-fedxray_signin"
POLL_HEADER = "x-dashboard-poll"  # automatic refreshes: they do not count as activity
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")  # fmt: skip
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
                    "Cross-Origin-Opener-Policy": "same-origin"}  # fmt: skip

templates = Jinja2Templates(directory=str(HERE / "templates"))


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page (and back to `next` afterwards)."""

    def __init__(self, next_path: str, reason: str = "") -> None:
        self.next_path, self.reason = next_path, reason


class Refused(Exception):
    """A request the dashboard refuses (CSRF, API credential): a page that says why, with this status."""

    def __init__(self, status: int, title: str, message: str) -> None:
        self.status, self.title, self.message = status, title, message


# ---------------------------------------------------------------- formatting for templates
def when(value: Any) -> str:
    """A stored time as '2026-11-28 09:12 UTC' ('-' when unknown)."""
    if not value:
        return "-"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: Any) -> str:
    """How long ago: 'just now', '5 min ago', '3 h ago', '2 days ago' ('never' when unknown)."""
    if not value:
        return "never"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    seconds = (dt.datetime.now(dt.UTC) - value).total_seconds()
    for limit, unit, size in ((60, "", 1), (3600, "min", 60), (86400, "h", 3600), (math.inf, "days", 86400)):
        if seconds < limit:
            return "just now" if not unit else f"{int(seconds // size)} {unit} ago"
    return "-"


def num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


templates.env.filters.update(when=when, ago=ago, num=num)
templates.env.globals.update(version=__version__, intended_use=INTENDED_USE)


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a template with what every page shows (the administrator, the CSRF token)."""
    signed = getattr(request.state, "admin", None)
    context.setdefault("nav", template.split(".")[0])
    return templates.TemplateResponse(request, template, {"admin": signed, **context}, status_code=status)


def json_script(data: Any) -> str:
    """JSON for a <script type="application/json"> block (nothing in it can close the tag)."""
    return json.dumps(data, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


templates.env.filters["json_script"] = json_script


# ---------------------------------------------------------------- who is asking
def ctx_of(request: Request):
    return request.app.state.central


def refuse_api_credentials(request: Request) -> None:
    if request.headers.get("authorization"):
        raise Refused(403, "API credentials cannot open the dashboard",
                      "The dashboard is for administrators who sign in with their account. Workstation, service "
                      "and admin credentials work only with the API (/api/v1/…).")  # fmt: skip


def current_admin(request: Request) -> accounts.SignedIn:
    """The signed-in administrator of this request, or SignInRequired."""
    refuse_api_credentials(request)
    ctx = ctx_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not token:
        raise SignInRequired(next_path)
    with transaction(ctx.sessions) as session:
        signed = accounts.resume_session(
            session=session, token=token, idle=dt.timedelta(seconds=ctx.settings.session_idle_seconds),
            lifetime=dt.timedelta(seconds=ctx.settings.session_lifetime_seconds),
            touch=request.headers.get(POLL_HEADER) != "1",
        )  # fmt: skip
    if signed is None:
        raise SignInRequired(next_path, "Your session has ended (signed out, or idle for too long). Sign in again.")
    request.state.admin = signed
    return signed


async def checked_form(request: Request) -> tuple[accounts.SignedIn, dict[str, str]]:
    """The administrator and the form of a state-changing request whose CSRF token and origin check out."""
    signed = current_admin(request)
    form = await request.form()
    same_origin(request)
    if not accounts.same_token(str(form.get("csrf") or ""), signed.csrf_token):
        raise Refused(403, "Form refused", "This form did not carry this session's security token, so nothing was "
                      "changed. Reload the page and try again.")  # fmt: skip
    return signed, {k: str(v) for k, v in form.items()}


def same_origin(request: Request) -> None:
    """Refuse a cross-site state-changing request (what the browser says about where it comes from)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if (site and site not in ("same-origin", "none")) or (origin and origin != expected):
        raise Refused(403, "Form refused", "This request came from another site; nothing was changed.")


def actor(signed: accounts.SignedIn) -> str:
    """How an administrator appears in the audit log."""
    return f"admin:{signed.account}"


# ---------------------------------------------------------------- cookies and redirects
def set_session_cookie(response: Response, token: str, *, max_age: int) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", secure=True, httponly=True,
                        samesite="strict")  # fmt: skip


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def set_sign_in_cookie(response: Response, token: str) -> None:
    """The sign-in form's own CSRF token, bound to this browser for 30 minutes."""
    response.set_cookie(SIGN_IN_COOKIE, token, max_age=1800, path="/", secure=True, httponly=True,
                        samesite="strict")  # fmt: skip


def safe_next(path: str | None) -> str:
    """Where to go after signing in: only a dashboard path on this site."""
    if path and path.startswith("/dashboard") and not path.startswith("//") and "\\" not in path:
        return path
    return "/dashboard/"


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def sign_in_redirect(next_path: str, reason: str = "") -> RedirectResponse:
    target = f"/dashboard/sign-in?next={quote(next_path, safe='')}"
    if reason:
        target += "&expired=1"
    return see_other(target)
