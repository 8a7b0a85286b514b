"""The web application: DICOMweb (PS3.18) under ``/dicom-web/``, the perfusion viewer under ``/viewer/``.

Handlers are thin: they parse the request, call :class:`~perfnode.web.backend.Backend` (the archive,
through the same matcher and store path as the DIMSE services) in a worker thread, and stream the
answer. Errors are :mod:`perfnode.web.errors` exceptions, answered as ``text/plain`` with a message
that names the attribute or rule.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from perfnode.archive.facade import QueryError, RetrieveItem
from perfnode.config import WebSettings
from perfnode.web import objects, qido, rendered, stow
from perfnode.web.access import AccessControl
from perfnode.web.backend import Backend
from perfnode.web.errors import BadRequest, NotAcceptable, NotFound, Unavailable, WebError
from perfnode.web.media import (
    DICOM,
    DICOM_JSON,
    EXPLICIT_LE,
    FRAME_MEDIA_TYPE,
    OCTET,
    Multipart,
    multipart_payload_types,
    parse_accept,
    require_json,
)

log = logging.getLogger("perfnode.web")

CHUNK = 1 << 20
VIEWER_DIST = Path(__file__).with_name("viewer") / "dist"
#: Not worth gzip-ing: pixel data and already-compressed images.
NO_GZIP = (
    *DEFAULT_EXCLUDED_CONTENT_TYPES,
    "multipart/related",
    "application/dicom",
    "application/octet-stream",
)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicom-web"


def _uid(request: Request, name: str) -> str:
    from perfnode.archive.facade import check_uid
    from perfnode.errors import CannotUnderstand
    from perfnode.web.errors import BadRequest

    value = request.path_params[name]
    try:
        return check_uid(
            value,
            {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "instance": "SOPInstanceUID"}[name],
        )
    except CannotUnderstand as exc:
        raise BadRequest(str(exc)) from None


class Services:
    """The route handlers, bound to one backend."""

    def __init__(self, backend: Backend, web: WebSettings) -> None:
        self.backend = backend
        self.web = web

    # -- helpers ---------------------------------------------------------------------------

    async def _items(self, request: Request, level: str) -> list[RetrieveItem]:
        study = _uid(request, "study")
        series = _uid(request, "series") if level in ("series", "instance") else None
        sop = _uid(request, "instance") if level == "instance" else None
        items = await run_in_threadpool(self.backend.instances, study, series, sop)
        if not items:
            what = {
                "study": f"study {study}",
                "series": f"series {series} of study {study}",
                "instance": f"instance {sop} in series {series} of study {study}",
            }[level]
            raise NotFound(f"no {what} in this archive")
        return items

    async def _item(self, request: Request) -> RetrieveItem:
        return (await self._items(request, "instance"))[0]

    def _instance_url(self, request: Request, item: RetrieveItem, study: str, series: str) -> str:
        return f"{base_url(request)}/studies/{study}/series/{series}/instances/{item.sop_instance_uid}"

    # -- QIDO-RS -----------------------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        path = request.url.path.rstrip("/")
        level = "STUDY" if path.endswith("/studies") else "SERIES" if path.endswith("/series") else "IMAGE"
        keys = {}
        if "study" in request.path_params:
            keys["StudyInstanceUID"] = _uid(request, "study")
        if "series" in request.path_params:
            keys["SeriesInstanceUID"] = _uid(request, "series")
        require_json(parse_accept(request.headers.get("accept")))
        req = qido.parse(level, list(request.query_params.multi_items()), keys, self.web.max_qido_results)
        try:
            query, pages = await run_in_threadpool(
                self.backend.search,
                req.identifier,
                relational=req.relational,
                offset=req.offset,
                page_size=min(max(req.limit, 1), 500),
            )
        except QueryError as exc:
            raise qido.query_error(exc) from None
        if query.unsupported:
            from pydicom.datadict import keyword_for_tag

            names = ", ".join(keyword_for_tag(t) or f"{t:08X}" for t in query.unsupported)
            req.warnings.append(f"The following attributes are not supported and are returned empty: {names}")
        base = base_url(request)
        limit = req.limit

        def collect() -> tuple[list, bool]:
            """Up to ``limit`` matches, and whether there are more (bounded by max_qido_results)."""
            found: list = []
            for page in pages:
                found.extend(page)
                if len(found) > limit:
                    return found[:limit], True
            return found, False

        found, more = await run_in_threadpool(collect)
        if more:  # PS3.18 10.6.3.3.1
            req.warnings.append("There are additional results that can be requested")

        def matches() -> Iterator[dict]:
            for ds in found:
                url = f"{base}/studies/{ds.StudyInstanceUID}"
                if level in ("SERIES", "IMAGE"):
                    url += f"/series/{ds.SeriesInstanceUID}"
                if level == "IMAGE":
                    url += f"/instances/{ds.SOPInstanceUID}"
                yield qido.to_json(ds, url)

        headers = {"Warning": ", ".join(f'299 perfnode "{w}"' for w in req.warnings)} if req.warnings else {}
        return StreamingResponse(
            iterate_in_threadpool(qido.json_array(matches())), media_type=DICOM_JSON, headers=headers
        )

    # -- WADO-RS: instances --------------------------------------------------------------------

    async def retrieve(self, request: Request) -> Response:
        level = _level(request)
        accepted = [
            (t, ts)
            for t, ts in multipart_payload_types(parse_accept(request.headers.get("accept")), DICOM)
            if t in (DICOM, "*/*", "*")
        ]
        if not accepted:
            raise NotAcceptable(
                f'this resource is multipart/related; type="{DICOM}" (PS3.18 10.4.1.1.1); '
                f"the request accepts {request.headers.get('accept')}"
            )
        wanted = [EXPLICIT_LE if ts is None else ts for _, ts in accepted]
        items = await self._items(request, level)
        chosen: list[str] = []
        for it in items:
            ts = objects.choose_syntax(it.transfer_syntax_uid, wanted)
            if ts is None:
                raise NotAcceptable(
                    f"instance {it.sop_instance_uid} is stored as {it.transfer_syntax_uid}; it "
                    f"cannot be sent as {', '.join(wanted)} (PS3.18 8.7.3.5)"
                )
            chosen.append(ts)
        mp = Multipart(DICOM)
        paths = [self.backend.path(it) for it in items]
        headers: dict[str, str] = {}
        if all(ts == it.transfer_syntax_uid for ts, it in zip(chosen, items, strict=True)):
            sizes = await run_in_threadpool(lambda: [p.stat().st_size for p in paths])
            heads = [mp.part_head(f"{DICOM}; transfer-syntax={ts}") for ts in chosen]
            total = sum(len(h) + s + len(mp.PART_END) for h, s in zip(heads, sizes, strict=True)) + len(
                mp.close()
            )
            headers["Content-Length"] = str(total)

        async def body() -> AsyncIterator[bytes]:
            for it, path, ts in zip(items, paths, chosen, strict=True):
                head = mp.part_head(f"{DICOM}; transfer-syntax={ts}")
                if ts != it.transfer_syntax_uid:
                    enc = await run_in_threadpool(objects.encode, path, it.transfer_syntax_uid, ts)
                    yield head + enc.data + mp.PART_END
                    continue
                # as stored: the file in 1 MiB chunks, the part head glued to the first, its end to the last
                pending = head
                async for chunk in _file_chunks(path):
                    if pending:
                        yield pending
                    pending = chunk
                yield pending + mp.PART_END
            yield mp.close()

        return StreamingResponse(body(), media_type=mp.content_type, headers=headers)

    # -- WADO-RS: metadata -------------------------------------------------------------------

    async def metadata(self, request: Request) -> Response:
        require_json(parse_accept(request.headers.get("accept")))
        level = _level(request.url.path.removesuffix("/metadata"))
        items = await self._items(request, level)
        base = base_url(request)
        study = _uid(request, "study")

        def instances() -> Iterator[dict]:
            series_of: dict[str, str] = {}
            for it in items:
                ds_json = objects.metadata_json(self.backend.path(it), "")
                series = (ds_json.get("0020000E", {}).get("Value") or [""])[0]
                series_of[it.sop_instance_uid] = series
                url = f"{base}/studies/{study}/series/{series}/instances/{it.sop_instance_uid}"
                for v in ds_json.values():
                    if "BulkDataURI" in v:
                        v["BulkDataURI"] = url + v["BulkDataURI"]
                yield ds_json

        return StreamingResponse(iterate_in_threadpool(qido.json_array(instances())), media_type=DICOM_JSON)

    # -- WADO-RS: frames, bulk data ------------------------------------------------------------

    async def frames(self, request: Request) -> Response:
        item = await self._item(request)
        path = self.backend.path(item)
        stored = item.transfer_syntax_uid
        accepted = multipart_payload_types(parse_accept(request.headers.get("accept")), OCTET)
        compressed_type = FRAME_MEDIA_TYPE.get(stored)
        mode = None
        for t, ts in accepted:
            if compressed_type and (
                t == compressed_type and ts in (None, "*", stored) or t == OCTET and ts == "*"
            ):
                mode, part_type = "encapsulated", t
                break
            if t in (OCTET, "*/*", "*") and ts in (None, "*", EXPLICIT_LE):
                mode, part_type = "native", OCTET
                break
        if mode is None:
            raise NotAcceptable(
                f"frames of this instance (stored as {stored}) are sent as "
                f'multipart/related; type="{OCTET}"'
                + (f' or type="{compressed_type}"' if compressed_type else "")
                + " (PS3.18 8.7.3.3)"
            )

        def header() -> tuple[Any, list[int]]:
            ds = objects.read_header(path)
            indices = objects.parse_frame_list(request.path_params["frames"], objects.number_of_frames(ds))
            if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise NotFound("this instance has no pixel data")
            return ds, indices

        ds, indices = await run_in_threadpool(header)  # 404/400 before the response starts
        read = objects.frame_encapsulated if mode == "encapsulated" else objects.frame_native
        ts = stored if mode == "encapsulated" else EXPLICIT_LE
        mp = Multipart(part_type)
        url = str(request.url)

        async def body() -> AsyncIterator[bytes]:  # one frame in memory at a time
            for n, i in enumerate(indices, start=1):
                frame = await run_in_threadpool(read, path, ds, i)
                head = mp.part_head(f"{part_type}; transfer-syntax={ts}", f"{url}#{n}", len(frame))
                yield head + frame + mp.PART_END
            yield mp.close()

        return StreamingResponse(body(), media_type=mp.content_type)

    async def bulkdata(self, request: Request) -> Response:
        item = await self._item(request)
        path = self.backend.path(item)

        def read() -> bytes:
            ds = objects.read_header(path)
            return objects.bulk_value(ds, request.path_params["tagpath"])

        data = await run_in_threadpool(read)
        ranges = parse_accept(request.headers.get("accept"))
        if any(r.type == OCTET for r in ranges) and not any(r.type == "multipart/related" for r in ranges):
            return Response(data, media_type=OCTET)
        if not multipart_payload_types(ranges, OCTET):
            raise NotAcceptable(f'bulk data is multipart/related; type="{OCTET}" or {OCTET} (PS3.18 8.7.3.3)')
        mp = Multipart(OCTET)
        return Response(
            b"".join([mp.part_head(OCTET, str(request.url), len(data)), data, mp.PART_END, mp.close()]),
            media_type=mp.content_type,
        )

    # -- WADO-RS: rendered, thumbnails ---------------------------------------------------------

    async def rendered(self, request: Request) -> Response:
        media_type = rendered.choose_type(parse_accept(request.headers.get("accept")))
        params = rendered.RenderParams.parse(dict(request.query_params))
        item = await self._item(request)
        path = self.backend.path(item)

        def render() -> list[bytes]:
            ds = objects.read_header(path)
            frames = request.path_params.get("frames")
            indices = objects.parse_frame_list(frames, objects.number_of_frames(ds)) if frames else [0]
            return [rendered.render(path, ds, i, params, media_type) for i in indices]

        images = await run_in_threadpool(render)
        if len(images) == 1:
            return Response(images[0], media_type=media_type)
        mp = Multipart(media_type)
        parts = [b for img in images for b in (mp.part_head(media_type, length=len(img)), img, mp.PART_END)]
        return Response(b"".join([*parts, mp.close()]), media_type=mp.content_type)

    async def thumbnail(self, request: Request) -> Response:
        media_type = rendered.choose_type(parse_accept(request.headers.get("accept")))
        query = dict(request.query_params)
        query.setdefault("viewport", "128,128")
        params = rendered.RenderParams.parse(query)
        level = _level(request.url.path.removesuffix("/thumbnail"))
        items = await self._items(request, level)
        item = items[len(items) // 2]
        path = self.backend.path(item)

        def render() -> bytes:
            ds = objects.read_header(path)
            return rendered.render(path, ds, objects.number_of_frames(ds) // 2, params, media_type)

        return Response(await run_in_threadpool(render), media_type=media_type)

    # -- STOW-RS -------------------------------------------------------------------------------

    async def store(self, request: Request) -> Response:
        study = _uid(request, "study") if "study" in request.path_params else None
        boundary = stow.boundary_of(request.headers.get("content-type"))
        accept = parse_accept(request.headers.get("accept"))
        require_json(accept)
        parser = stow.StowParser(self.backend, boundary)
        results: list[stow.PartResult] = []
        source = ""
        try:
            async for chunk in request.stream():
                parser.feed(chunk)
                while parser.ready:
                    rf, ctype = parser.ready.pop(0)
                    if rf is not None:
                        results.append(
                            await run_in_threadpool(stow.store_part, self.backend, rf, ctype, study, source)
                        )
        finally:
            parser.discard()
        status, body, warnings = stow.response(results, base_url(request), study)
        headers = {}
        if warnings:
            headers["Warning"] = ", ".join(f'299 perfnode "{_header_text(w)}"' for w in warnings[:20])
        log.info(
            "STOW-RS: %d stored, %d refused (HTTP %d)",
            sum(r.failure is None for r in results),
            sum(r.failure is not None for r in results),
            status,
        )
        return JSONResponse(body, status_code=status, media_type=DICOM_JSON, headers=headers)

    # -- viewer helpers ------------------------------------------------------------------------

    async def jobs(self, request: Request) -> Response:
        series = [s for s in request.query_params.getlist("series") if s]
        jobs = await run_in_threadpool(self.backend.jobs, series)
        for j in jobs:
            report = self.backend.archive.root / j["output_dir"] / "report" / "index.html"
            j["report"] = (
                f"/viewer/jobs/{j['id']}/report/index.html" if j["output_dir"] and report.is_file() else None
            )
            j["qc"] = f"/viewer/jobs/{j['id']}/report/qc.json" if j["report"] else None
        return JSONResponse(jobs)

    async def fit(self, request: Request) -> Response:
        from perfnode.web.fit import fit_curve

        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body must be JSON: {times_s, tissue, aif, method, kh_over_rho}") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return JSONResponse(await run_in_threadpool(fit_curve, body))

    async def job_file(self, request: Request) -> Response:
        from starlette.responses import FileResponse

        job = await run_in_threadpool(self.backend.job, int(request.path_params["job"]))
        if job is None or not job["output_dir"]:
            raise NotFound(f"no job {request.path_params['job']} with outputs")
        root = (self.backend.archive.root / job["output_dir"] / "report").resolve()
        target = (root / request.path_params["path"]).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise NotFound(f"no file {request.path_params['path']!r} in the report of job {job['id']}")
        return FileResponse(target)


def _header_text(text: str) -> str:
    return (
        text.encode("ascii", "replace").decode().replace('"', "'").replace("\r", " ").replace("\n", " ")[:300]
    )


def _level(request_or_path: Request | str) -> str:
    path = request_or_path if isinstance(request_or_path, str) else request_or_path.url.path
    path = path.rstrip("/")
    parent = path.rsplit("/", 2)[-2]
    return {"instances": "instance", "series": "series", "studies": "study"}[parent]


def _open_and_read(path: Path) -> tuple[Any, bytes]:
    """Open and read the first chunk; a file smaller than a chunk is closed at once (one thread hop)."""
    fp = open(path, "rb")  # noqa: SIM115 - closed by _file_chunks
    try:
        data = fp.read(CHUNK)
    except BaseException:
        fp.close()
        raise
    if len(data) < CHUNK:
        fp.close()
        return None, data
    return fp, data


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A stored file, a chunk at a time (reads in worker threads; one hop for a small file)."""
    fp, data = await run_in_threadpool(_open_and_read, path)
    if fp is None:
        yield data
        return
    try:
        yield data
        while chunk := await run_in_threadpool(fp.read, CHUNK):
            yield chunk
    finally:
        await run_in_threadpool(fp.close)


async def _web_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WebError)
    log.info("web: %d for %s %s: %s", exc.status, request.method, request.url.path, exc)
    return PlainTextResponse(
        f"{exc.status} {_REASON.get(exc.status, '')}: {exc}\n", status_code=exc.status, headers=exc.headers
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("web: 500 for %s %s", request.method, request.url.path)
    return PlainTextResponse(f"500 Internal Server Error: {type(exc).__name__}: {exc}\n", status_code=500)


_REASON = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    503: "Service Unavailable",
}


def _viewer_missing(_request: Request) -> Response:
    raise Unavailable(
        "the viewer is not built: run ./run.sh setup (npm ci && npm run build in perfnode/web/viewer)"
    )


def build_app(backend: Backend, web: WebSettings, viewer_dist: Path = VIEWER_DIST) -> Starlette:
    s = Services(backend, web)
    studies = "/dicom-web/studies/{study}"
    series = studies + "/series/{series}"
    inst = series + "/instances/{instance}"
    routes: list[Any] = [
        Route("/dicom-web/studies", s.search, methods=["GET"]),
        Route("/dicom-web/studies", s.store, methods=["POST"]),
        Route("/dicom-web/series", s.search, methods=["GET"]),
        Route("/dicom-web/instances", s.search, methods=["GET"]),
        Route(studies, s.retrieve, methods=["GET"]),
        Route(studies, s.store, methods=["POST"]),
        Route(studies + "/metadata", s.metadata),
        Route(studies + "/thumbnail", s.thumbnail),
        Route(studies + "/series", s.search),
        Route(studies + "/instances", s.search),
        Route(series, s.retrieve),
        Route(series + "/metadata", s.metadata),
        Route(series + "/thumbnail", s.thumbnail),
        Route(series + "/instances", s.search),
        Route(inst, s.retrieve),
        Route(inst + "/metadata", s.metadata),
        Route(inst + "/rendered", s.rendered),
        Route(inst + "/thumbnail", s.thumbnail),
        Route(inst + "/frames/{frames}", s.frames),
        Route(inst + "/frames/{frames}/rendered", s.rendered),
        Route(inst + "/bulkdata/{tagpath:path}", s.bulkdata),
        Route("/viewer/api/jobs", s.jobs),
        Route("/viewer/api/fit", s.fit, methods=["POST"]),
        Route("/viewer/jobs/{job:int}/report/{path:path}", s.job_file),
        Route("/", lambda _r: RedirectResponse("/viewer/")),
    ]
    if (viewer_dist / "index.html").is_file():
        routes.append(Mount("/viewer", StaticFiles(directory=viewer_dist, html=True), name="viewer"))
    else:
        routes.append(Route("/viewer/{rest:path}", _viewer_missing))
    middleware = [
        Middleware(AccessControl, web=web),
        Middleware(
            GZipMiddleware, minimum_size=web.gzip_min_bytes, compresslevel=5, exclude_content_types=NO_GZIP
        ),
    ]
    if web.cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(web.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=["Warning", "Content-Location"],
            ),
        )
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={WebError: _web_error, Exception: _internal_error},
    )
