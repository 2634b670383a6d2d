"""Live traffic: a router for production and a candidate (A/B, canary, shadow) on registry aliases.

Pure logic, free of I/O: `assign` (sticky buckets), `rollout` (the rollout state, share and stage
arithmetic, canary decisions), `stats` (A/B statistics, sample size, sample-ratio mismatch, the
post-deployment regression test), `payload` (request bodies to validated frames).
I/O at the edges: `state` (the rollout state in the registry, compare-and-set), `predlog` (the
prediction log on SQLAlchemy), `live` (loaded models and reloads), `app` (the FastAPI service),
`control` (rollout commands and the canary controller), `report` (`retrain ab report`), `watch`
(post-deployment watch), `logdata` (the log as a data source).
"""
