"""The dashboard's own JavaScript and CSS, served from `static/admin/` under /admin/static/.

Only files of the known kinds that are in that directory when the app is
built are served, read once into memory: a request names a file, never a
path, so nothing outside the directory can be reached.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from app.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static" / "admin"
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


class StaticFiles:
    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        for path in sorted(directory.iterdir()) if directory.is_dir() else []:
            kind = CONTENT_TYPES.get(path.suffix)
            if kind is not None and path.is_file():
                self.files[path.name] = (path.read_bytes(), kind)

    async def handle(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["name"])
        if found is None:
            raise NotFound("no such file")
        body, kind = found
        charset = "utf-8" if kind.startswith("text/") or kind.endswith("+xml") else None
        return web.Response(body=body, content_type=kind, charset=charset)
