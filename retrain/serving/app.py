"""The live service: FastAPI on uvicorn, routing each record to production or the candidate.

Endpoints: `POST /predict`, `POST /feedback`, `GET /health`, `GET /status`, `POST /webhook/mlflow`.
This module imports FastAPI: import it only to serve. Scoring runs in a worker thread (as `mlflow models serve`
does), except small requests to our own models (bodies up to `INLINE_BYTES`, fast path only): they score in
less time than the hop to a worker thread takes, so they run on the event loop. The prediction log is written
by its own thread; shadow scoring runs on one more thread behind a bounded queue, after the answer is on its
way, so a slow or failing candidate in shadow mode never changes the answer, its status code or its latency
beyond handing over a job (when the queue is full the shadow score is skipped and counted).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from fastapi import Request  # at module level: FastAPI resolves the endpoints' string annotations here

from retrain.config import Settings
from retrain.serving import assign
from retrain.serving.feedback import feedback_rows
from retrain.serving.payload import PayloadError, parse
from retrain.serving.predlog import Batch, LoggedRequest, PredictionLog, new_request_id, redact, utcnow
from retrain.serving.scoring import Scorer

if TYPE_CHECKING:
    from fastapi import FastAPI

    from retrain.serving.live import Live, Loaded

log = logging.getLogger("retrain.serving")

WEBHOOK_MAX_AGE_S = 300  # MLflow signs a timestamp: older deliveries are refused as replays
INLINE_BYTES = 4096  # a few records: the fast path scores them in ~0.1 ms, less than a hop to a worker thread


class Router:
    """Scores one request against the current snapshot, logs it, and keeps the counters /status shows."""

    def __init__(self, settings: Settings, live: Live, predictions: PredictionLog) -> None:
        self.settings = settings
        self.live = live
        self.log = predictions
        self.name = settings.registry.model_name
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.scorer = Scorer(self.name, predictions, self.count, settings.serving.shadow_queue)

    def count(self, **increments: int) -> None:
        with self._lock:
            self.counts.update(increments)

    # -- /predict

    def predict(self, body: bytes) -> tuple[dict[str, Any], str]:
        """Parse, route, score, log; returns (response JSON, request id). PayloadError for a bad request."""
        import numpy as np

        snap = self.live.snapshot
        if snap is None:
            raise PayloadError(503, "no model loaded yet; retry shortly")
        parsed = parse(_json(body), snap.production.columns, self.settings.data.id, self.settings.serving.max_records)
        if snap.production.fast is not None:  # values the network cannot take: 422 naming record and field, now
            snap.production.fast.encode(parsed)
        ids, n = parsed.entity_ids, parsed.n
        at = utcnow()
        request_id = new_request_id(at)  # time-ordered (UUIDv7): a window's rows and labels lie together
        assignment = ["entity" if e is not None else "request" for e in ids]
        to_candidate = np.zeros(n, dtype=bool)
        route = snap.route
        if route.mode in ("ab", "canary") and snap.candidate is not None:
            limit = assign.share_buckets(route.share)
            fallback = assign.bucket(request_id, self.name)
            to_candidate = np.fromiter(
                ((assign.bucket(e, self.name) if e is not None else fallback) < limit for e in ids), bool, n
            )
        prediction = np.zeros(n, dtype=np.int64)
        probability = np.zeros(n, dtype=np.float64)
        by_candidate = False  # whether the candidate answered the records `to_candidate`
        cand_idx = np.flatnonzero(to_candidate)
        prod_idx = np.flatnonzero(~to_candidate)
        batches: list[Batch] = []
        if len(cand_idx) and snap.candidate is not None:  # only a candidate's route sends rows to it
            ok = self.scorer.score(
                snap.candidate,
                "candidate",
                parsed,
                cand_idx,
                request_id,
                at,
                ids,
                assignment,
                n,
                prediction,
                probability,
                served=True,
                batches=batches,
            )
            if ok:
                by_candidate = True
            else:  # the candidate failed: production answers these records too (the error is logged and counted)
                prod_idx = np.arange(n)
                self.count(fallbacks=len(cand_idx))
        answered = not len(prod_idx) or self.scorer.score(
            snap.production,
            "production",
            parsed,
            prod_idx,
            request_id,
            at,
            ids,
            assignment,
            n,
            prediction,
            probability,
            served=True,
            batches=batches,
        )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # UTF-16/32 JSON: keep what it says, in UTF-8
            text = json.dumps(_json(body))
        logged = self.log.add(  # lands in one transaction; with serving.log_sync, waits for the commit
            *batches, request=LoggedRequest(request_id, at, self.name, n, text), wait=self.settings.serving.log_sync
        )
        if not logged:
            raise PayloadError(503, "the prediction log did not confirm this request's rows (serving.log_sync); retry")
        if not answered:
            raise PayloadError(
                500,
                f"production model version {snap.production.version} failed to score the request; see the service log",
            )
        served = {"records_candidate": len(cand_idx)} if by_candidate else {}
        if not by_candidate or len(cand_idx) < n:
            served["records_production"] = n - len(cand_idx) if by_candidate else n
        self.count(requests=1, **served)
        if route.mode == "shadow" and snap.candidate is not None:
            self.scorer.submit_shadow(snap.candidate, parsed, request_id, at, ids, assignment)
        pv = snap.production.version
        if by_candidate and snap.candidate is not None:
            cv = snap.candidate.version
            predictions = [
                {
                    "prediction": p,
                    "probability": q,
                    "variant": "candidate" if c else "production",
                    "version": cv if c else pv,
                }
                for p, q, c in zip(prediction.tolist(), probability.tolist(), to_candidate.tolist(), strict=True)
            ]
        else:
            predictions = [
                {"prediction": p, "probability": q, "variant": "production", "version": pv}
                for p, q in zip(prediction.tolist(), probability.tolist(), strict=True)
            ]
        return {"request_id": request_id, "predictions": predictions}, request_id

    def inline(self) -> bool:
        """Whether a small request may be scored on the event loop: every version it can reach has a fast path."""
        snap = self.live.snapshot
        return (
            snap is not None
            and snap.production.fast is not None
            and (snap.candidate is None or snap.candidate.fast is not None)
        )

    def close(self) -> None:
        """Finish queued shadow jobs (bounded by `shadow_queue`), then stop."""
        self.scorer.close()

    # -- /feedback

    def feedback(self, body: bytes) -> dict[str, Any]:
        """Store labels by request id (+ record) or entity id; PayloadError naming the bad item."""
        rows = feedback_rows(_json(body), self.log, self.name)
        self.log.add_feedback(rows)
        self.count(feedback=len(rows))
        return {"accepted": len(rows)}

    # -- /status

    def status(self) -> dict[str, Any]:
        snap = self.live.snapshot
        st = self.live.status

        def describe(loaded: Loaded | None) -> dict[str, Any] | None:
            return (
                None
                if loaded is None
                else {"version": loaded.version, "loaded_at": loaded.loaded_at, "load_s": loaded.load_s}
            )

        route = snap.route if snap else None
        rollout = snap.rollout if snap else None
        with self._lock:
            counts = dict(self.counts)
        c = self.log.counters
        return {
            "model": self.name,
            "production": describe(snap.production) if snap else None,
            "candidate": describe(snap.candidate) if snap else None,
            "mode": route.mode if route else None,
            "share": route.share if route else None,
            "rollout": None
            if rollout is None
            else {
                "mode": rollout.mode,
                "status": rollout.status,
                "candidate": rollout.candidate,
                "share": rollout.share,
                "stage": rollout.stage + 1 if rollout.stages else None,
                "stages": list(rollout.stages),
                "seq": rollout.seq,
                "reason": rollout.reason,
            },
            "counts": counts,
            "reload": {
                "last_poll_at": st.last_poll_at,
                "last_change_at": st.last_change_at,
                "changes": st.changes,
                "error": st.error,
                "errors": st.errors,
                "notes": st.notes,
                "poll_s": self.settings.serving.poll_s,
            },
            "log": {
                "url": redact(self.log.url),
                "rows_in": c.rows_in,
                "rows_out": c.rows_out,
                "backlog": self.log.backlog,
                "failed_writes": c.batches_failed,
                "lost": c.lost,
                "error": c.last_error,
            },
        }


def _json(body: bytes) -> Any:
    """The body parsed once, by orjson; what orjson refuses (NaN and Infinity literals, UTF-16/32, integers
    beyond 64 bits, nesting over 1,024 levels) by the standard library, to keep what it accepted or to name
    the problem in a 400."""
    import orjson

    if not body or not body.strip():
        raise PayloadError(400, "empty request body: send JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except RecursionError:
        raise PayloadError(400, "the body nests too deeply: send records as flat objects or rows") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer with too many digits
        raise PayloadError(400, f"the body is not valid JSON: {str(exc)[:200]}") from None


def verify_signature(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> str | None:
    """None when an MLflow webhook delivery is authentic and fresh, else why not.

    MLflow signs `<delivery id>.<timestamp>.<payload>` with HMAC-SHA256 and sends `v1,<base64>` in
    X-MLflow-Signature, with X-MLflow-Delivery-Id and X-MLflow-Timestamp (Unix seconds).
    """
    signature = headers.get("x-mlflow-signature", "")
    delivery = headers.get("x-mlflow-delivery-id", "")
    stamp = headers.get("x-mlflow-timestamp", "")
    if not signature or not delivery or not stamp:
        return "missing X-MLflow-Signature, X-MLflow-Delivery-Id or X-MLflow-Timestamp header"
    try:
        age = abs((now if now is not None else time.time()) - int(stamp))
    except ValueError:
        return f"X-MLflow-Timestamp {stamp!r} is not a Unix time"
    if age > WEBHOOK_MAX_AGE_S:
        return f"delivery is {age:.0f} s old (limit {WEBHOOK_MAX_AGE_S} s): refused as a possible replay"
    digest = hmac.new(secret.encode(), f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    if not hmac.compare_digest(expected, signature):
        return "signature does not match: check that the webhook's secret equals the service's"
    return None


def create_app(settings: Settings, live: Live, predictions: PredictionLog) -> FastAPI:
    """The FastAPI app around a started `Live` and `PredictionLog`; its lifespan stops them in order."""
    import contextlib

    import orjson
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    router = Router(settings, live, predictions)
    limit = settings.serving.max_body_bytes

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        predictions.start()
        live.start()
        try:
            yield
        finally:  # uvicorn got SIGTERM/SIGINT and in-flight requests are done: stop polling, drain, write the log
            live.stop()
            await run_in_threadpool(router.close)
            await run_in_threadpool(predictions.close)
            log.info(
                "stopped: %d prediction rows written, %d lost", predictions.counters.rows_out, predictions.counters.lost
            )

    app = FastAPI(title="retrain serve", lifespan=lifespan)
    app.state.router = router

    def error(exc: PayloadError) -> JSONResponse:
        router.count(**{f"rejected_{exc.status}": 1})
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def read(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadError(
                413,
                f"the body has {int(declared):,} bytes, over the limit of {limit:,} "
                "(serving.max_body_bytes); send fewer records per request",
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadError(
                    413,
                    f"the body is over the limit of {limit:,} bytes (serving.max_body_bytes); "
                    "send fewer records per request",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        try:
            body = await read(request)
            if len(body) <= INLINE_BYTES and router.inline():
                answer, request_id = router.predict(body)
            else:
                answer, request_id = await run_in_threadpool(router.predict, body)
        except PayloadError as exc:
            return error(exc)
        return Response(orjson.dumps(answer), media_type="application/json", headers={"X-Request-Id": request_id})

    @app.post("/feedback")
    async def feedback(request: Request) -> Response:
        try:
            body = await read(request)
            return JSONResponse(await run_in_threadpool(router.feedback, body))
        except PayloadError as exc:
            return error(exc)

    @app.get("/health")
    async def health() -> Response:
        snap = live.snapshot
        if snap is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok", "production": snap.production.version, "mode": snap.route.mode})

    @app.get("/status")
    async def status() -> Response:
        return JSONResponse(router.status())

    @app.post("/webhook/mlflow")
    async def webhook(request: Request) -> Response:
        try:
            body = await read(request)
        except PayloadError as exc:
            return error(exc)
        secret = os.environ.get(settings.serving.webhook_secret_env, "")
        if secret:
            problem = verify_signature(secret, {k.lower(): v for k, v in request.headers.items()}, body)
            if problem:
                router.count(webhook_refused=1)
                log.warning("refused an MLflow webhook delivery: %s", problem)
                return JSONResponse({"error": problem}, status_code=401)
        try:
            event = json.loads(body)
            data = event.get("data") or {}
            relevant = event.get("entity") == "model_version_alias" and data.get("name") == settings.registry.model_name
        except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, or nested too deeply
            return error(
                PayloadError(400, "the webhook body is not an MLflow webhook event (JSON with entity, action, data)")
            )
        if relevant:
            router.count(webhook_reloads=1)
            live.wake()
        return JSONResponse({"reload": relevant})

    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Load production (and the candidate of an active rollout), then serve until SIGTERM/SIGINT."""
    import torch
    import uvicorn

    from retrain.serving.live import Live

    # requests run in parallel already; intra-op threads on top of them only wait on each other (p99 of a
    # 1,000-record forward pass 25 ms with one thread, 280-325 ms with two, on 2 busy cores)
    torch.set_num_threads(settings.serving.torch_threads)
    live = Live(settings)
    live.refresh()  # RegistryError before listening when there is nothing (loadable) to serve
    predictions = PredictionLog(
        settings.serving.log_url,
        settings.serving.log_batch_rows,
        settings.serving.log_flush_s,
        sync=settings.serving.log_sync,
        retention_days=settings.serving.log_retention_days,
    )
    if not os.environ.get(settings.serving.webhook_secret_env):
        log.warning(
            "$%s is not set: MLflow webhook deliveries are accepted without a signature check",
            settings.serving.webhook_secret_env,
        )
    app = create_app(settings, live, predictions)
    config = uvicorn.Config(
        app, host=host or settings.serving.host, port=port or settings.serving.port, log_level="info", lifespan="on"
    )
    uvicorn.Server(config).run()
