"""The review console: a FastAPI app with server-rendered panels (Jinja2) and a little vanilla JS.

Routes:

* ``GET /`` (``?bin=BIN-1``: that bin's photos instead of the review queue): the page, with the
  first photo's panel rendered and the queue as JSON for the script;
* ``GET /panel?bin_id=&sk=``: one photo's panel (HTML fragment; the script preloads the next);
* ``GET /photo?bin_id=&sk=``: the upload's bytes (local stack; on AWS panels carry presigned URLs);
* ``GET /api/queue[?bin=]``, ``GET /api/photos?bin_id=&sk=``: the same data as JSON;
* ``POST /api/corrections`` ``{"bin_id", "sk", "count", "seen", "source"}``: save a human count
  (``source`` ``accepted`` when the reviewer confirmed the model's count, else ``typed``).

A photo is one upload, named by its record: ``bin_id`` and the record's sort key ``sk``
(``IMAGE#<key>#<version digest>``); ``seen`` is the record version the page showed.

Everything is served from this package (no CDN). Only 127.0.0.1/localhost host names are
answered (no DNS rebinding) and writes need the ``X-Bincount-Review`` header, which a cross-site
form cannot send.

Uploads are untrusted: anyone who may write the ingest prefix chooses the bytes and the stored
Content-Type. ``/photo`` answers only bytes that are a JPEG or PNG by their content, typed by the
content, with ``nosniff``; every answer carries a Content-Security-Policy that runs only this
package's script file (no inline script, no handlers in markup), so even bytes that reached the
page as markup could not act through the console's API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bincount.corrections import DEFAULT_NUM_CLASSES, TYPED, CorrectionRefused, PhotoGone
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware

from cli.review.keys import console_keys, keys_json
from cli.review.service import ReviewService, UnreadableRecord

HERE = Path(__file__).parent
WRITE_HEADER = "X-Bincount-Review"
LOCAL_HOSTS = ["127.0.0.1", "localhost", "testserver"]
PAGE_QUEUE = 1000  # photos one page carries (a few hundred bytes each); `r` reloads the next ones
# Scripts and style sheets come only from /static; the chart is plain SVG attributes, so no inline
# style or script is allowed at all.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:{photos}; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
# A photo opened on its own (a new tab): no script, no plugins, no forms even if a browser tried.
PHOTO_POLICY = "default-src 'none'; img-src 'self'; sandbox"


def security_headers(photo_origin: str) -> dict[str, str]:
    """Headers on every answer of the console (``photo_origin``: where presigned photos load from)."""
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY.format(
            photos=f" {photo_origin}" if photo_origin else ""
        ),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


class CorrectionRequest(BaseModel):
    bin_id: str
    sk: str  # which upload was reviewed: its record's sort key
    count: str | int
    seen: str | None = None  # the record version the page showed
    source: str = TYPED  # "accepted": the reviewer confirmed the model's count (the accept key)


def refusal(error: CorrectionRefused) -> JSONResponse:
    return JSONResponse({"error": str(error), "kind": type(error).__name__}, status_code=error.status)


def create_app(service: ReviewService) -> FastAPI:
    app = FastAPI(title="Bin Count review console", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOCAL_HOSTS)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    headers = security_headers(service.photo_origin)

    @app.middleware("http")
    async def secure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(CorrectionRefused)
    async def refused(request: Request, error: CorrectionRefused) -> JSONResponse:
        return refusal(error)

    add_page_routes(app, service, Jinja2Templates(directory=HERE / "templates"))
    add_api_routes(app, service)
    return app


def add_page_routes(app: FastAPI, service: ReviewService, templates: Jinja2Templates) -> None:
    """``/``, ``/panel`` and ``/photo``: what the browser renders."""

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, bin: str = "") -> Response:
        problems: list[str] = []
        waiting = service.queue(bin.strip(), problems)
        queue = [entry.to_dict() for entry in waiting[:PAGE_QUEUE]]
        panel, message = None, ""
        if queue:
            try:
                panel = service.view(queue[0]["bin_id"], queue[0]["sk"])
            except (PhotoGone, UnreadableRecord) as error:  # deleted since the queue was read
                message = str(error)
        context = {
            "message": message,
            "problems": problems,
            "queue": queue,
            "more": len(waiting) - len(queue),
            "photo": panel,
            "reviewer": service.reviewer,
            "bin": bin.strip(),
            "stack": service.resources.stack,
            "keys": keys_json(console_keys(panel["top"] if panel else DEFAULT_NUM_CLASSES - 1)),
        }
        return templates.TemplateResponse(request, "console.html", context)

    @app.get("/panel", response_class=HTMLResponse)
    def panel(request: Request, bin_id: str, sk: str) -> Response:
        try:
            view = service.view(bin_id, sk)
        except (PhotoGone, UnreadableRecord) as error:
            return templates.TemplateResponse(
                request, "_gone.html", {"message": str(error)}, status_code=error.status
            )
        return templates.TemplateResponse(request, "_photo.html", {"photo": view})

    @app.get("/photo")
    def photo(bin_id: str, sk: str) -> Response:
        body, content_type = service.photo(bin_id, sk)  # NotAPhoto (415) unless JPEG/PNG by content
        return Response(
            body,
            media_type=content_type,
            headers={
                "Cache-Control": "private, max-age=3600",
                "Content-Disposition": "inline",
                "Content-Security-Policy": PHOTO_POLICY,
            },
        )


def add_api_routes(app: FastAPI, service: ReviewService) -> None:
    """``/api/...``: the same data as JSON, and the one write (a correction, behind the header)."""

    @app.get("/api/queue")
    def queue(bin: str = "") -> dict[str, Any]:
        problems: list[str] = []
        items = [entry.to_dict() for entry in service.queue(bin.strip(), problems)]
        return {"reviewer": service.reviewer, "total": len(items), "items": items, "problems": problems}

    @app.get("/api/photos")
    def photo_json(bin_id: str, sk: str) -> dict[str, Any]:
        return service.view(bin_id, sk)

    @app.post("/api/corrections")
    def correct(request: Request, body: CorrectionRequest) -> JSONResponse:
        if request.headers.get(WRITE_HEADER) != "1":
            return JSONResponse({"error": f"writes need the {WRITE_HEADER}: 1 header"}, status_code=403)
        result = service.correct(body.bin_id, body.sk, body.count, body.seen, body.source)
        return JSONResponse(
            {
                "bin_id": body.bin_id,
                "sk": body.sk,
                "key": result.event.image.key,
                "image_version": result.record.get("image_version"),
                "status": result.status.value,
                "message": result.message,
                "label": str(result.label),
                "source": result.source,
                "reviewer": result.record.get("reviewer"),
                "reviewed_at": result.record.get("reviewed_at"),
                "latest_updated": result.latest_followed,
            }
        )
