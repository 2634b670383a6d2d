"""The floor of `bench_serving`: a bare FastAPI endpoint under uvicorn that reads and parses the same body
(orjson, as `retrain serve` does) and answers a constant. Run: python -m uvicorn benchmarks.bare_endpoint:app"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI(title="bare endpoint")
ANSWER = orjson.dumps({"predictions": [{"prediction": 0, "probability": 0.5}]})


@app.post("/predict")
async def predict(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(ANSWER, media_type="application/json")


@app.get("/health")
async def health() -> Response:
    return Response(b'{"status": "ok"}', media_type="application/json")
