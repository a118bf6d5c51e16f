"""Mounts the dashboard on the central's FastAPI application: its pages and forms, its static files (scripts,
styles and their licences, all served from here), its error pages and its security headers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from central.dashboard import forms, pages
from central.dashboard.web import HERE, SECURITY_HEADERS, Refused, SignInRequired, page, sign_in_redirect


def mount(app: FastAPI) -> None:
    """Add the dashboard (under /dashboard, with / leading to it) to `app`."""
    app.include_router(forms.router)
    app.include_router(pages.router)
    app.mount("/dashboard/static", StaticFiles(directory=str(HERE / "static")), name="dashboard-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=303)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired):
        if request.url.path.endswith(".json") or request.headers.get("hx-request"):
            from fastapi.responses import JSONResponse

            return JSONResponse({"detail": "Signed out: sign in again."}, status_code=401)
        return sign_in_redirect(exc.next_path, exc.reason)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused):
        return page(request, "error.html", status=exc.status, title=exc.title, message=exc.message, nav="")

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/dashboard"):
            for name, value in SECURITY_HEADERS.items():
                if name == "Cache-Control" and request.url.path.startswith("/dashboard/static"):
                    continue
                response.headers.setdefault(name, value)
        return response
