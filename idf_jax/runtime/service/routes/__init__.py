"""The service's routes, one module per group; each `router(ctx)` builds its APIRouter.

`health` (/healthz, /readyz, /metrics), `sample` (/v1/capsules, /v1/sample), `equilibrium`,
`jobs` (/v1/jobs), `nvp`, `eil` (/v1/eil/*, /v1/ledger/*), `websocket` (/v1/stream) and
`nvp_stream` (/v1/nvp/stream). A router holds
its full paths (the route's path labels /metrics) and its key dependency.
"""
