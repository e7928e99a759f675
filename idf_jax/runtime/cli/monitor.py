"""`idf monitor`: a live terminal dashboard of a running service's /metrics."""

from __future__ import annotations

import math
import time

import typer

from ._common import console

__all__ = ["DASHBOARDS", "monitor", "render_dashboard", "scrape"]


DASHBOARDS = ("energy-metrics", "http")


def _histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Quantile from cumulative (upper bound, count) buckets, linear inside a bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    total = buckets[-1][1]
    rank = q * total
    prev_b, prev_c = 0.0, 0.0
    for b, c in buckets:
        if c >= rank:
            if math.isinf(b):
                return prev_b
            frac = 0.0 if c == prev_c else (rank - prev_c) / (c - prev_c)
            return prev_b + (b - prev_b) * frac
        prev_b, prev_c = b, c
    return prev_b


def scrape(url: str, api_key: str | None, timeout: float = 5.0) -> dict[str, list]:
    """Fetch /metrics and parse it: {sample name: [(labels, value), ...]}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    r = httpx.get(url.rstrip("/") + "/metrics", headers=headers, timeout=timeout)
    if r.status_code == 401:
        raise ValueError("the service refused the API key (give --api-key or IDF_API_KEY)")
    r.raise_for_status()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def _total(m, name, **match) -> float:
    return sum(
        v for labels, v in m.get(name, []) if all(labels.get(k) == w for k, w in match.items())
    )


def render_dashboard(name: str, m: dict, prev: dict | None, dt: float):
    """A rich Table for dashboard `name` from two scrapes `dt` seconds apart."""
    from rich.table import Table

    def rate(metric, **match):
        if prev is None or dt <= 0:
            return float("nan")
        return (_total(m, metric, **match) - _total(prev, metric, **match)) / dt

    if name == "energy-metrics":
        t = Table(title="idf energy metrics")
        t.add_column("quantity")
        t.add_column("total", justify="right")
        t.add_column("per second", justify="right")
        rows = [
            ("samples drawn", "idf_samples_drawn_total", {}),
            ("sampler chain-steps", "idf_sampler_steps_total", {}),
            ("NVP predictions", "idf_nvp_predictions_total", {}),
            ("EIL readings", "idf_eil_readings_total", {}),
            ("EIL decisions", "idf_eil_decisions_total", {}),
            ("proofs (valid)", "idf_eil_proofs_total", {"valid": "true"}),
            ("proofs (invalid)", "idf_eil_proofs_total", {"valid": "false"}),
            ("PFT minted", "idf_eil_pft_minted_total", {}),
        ]
        for label, metric, match in rows:
            r = rate(metric, **match)
            t.add_row(
                label, f"{_total(m, metric, **match):,.0f}", "-" if math.isnan(r) else f"{r:,.1f}"
            )
        bs_n = _total(m, "idf_nvp_batch_size_count")
        t.add_row(
            "mean NVP batch",
            f"{_total(m, 'idf_nvp_batch_size_sum') / bs_n:.1f}" if bs_n else "-",
            "",
        )
        t.add_row("open streams", f"{_total(m, 'idf_ws_connections'):.0f}", "")
        return t
    if name == "http":
        t = Table(title="idf HTTP requests")
        for c in ("route", "requests", "per second", "p50 ms", "p99 ms", "errors (4xx/5xx)"):
            t.add_column(c, justify="left" if c == "route" else "right")
        routes = sorted({lab["route"] for lab, _ in m.get("idf_http_requests_total", [])})
        for route in routes:
            buckets = [
                (float(lab["le"]), v)
                for lab, v in m.get("idf_http_request_duration_seconds_bucket", [])
                if lab.get("route") == route
            ]
            errs = sum(
                v
                for lab, v in m.get("idf_http_requests_total", [])
                if lab.get("route") == route and lab.get("status", "").startswith(("4", "5"))
            )
            r = rate("idf_http_requests_total", route=route)
            t.add_row(
                route,
                f"{_total(m, 'idf_http_requests_total', route=route):,.0f}",
                "-" if math.isnan(r) else f"{r:,.1f}",
                f"{1e3 * _histogram_quantile(buckets, 0.5):.1f}",
                f"{1e3 * _histogram_quantile(buckets, 0.99):.1f}",
                f"{errs:,.0f}",
            )
        return t
    raise ValueError(f"unknown dashboard {name!r}; choose one of {DASHBOARDS}")


def monitor(
    url: str = typer.Option("http://127.0.0.1:8000", help="service base URL"),
    dashboard: str = typer.Option("energy-metrics", help=f"one of {', '.join(DASHBOARDS)}"),
    api_key: str | None = typer.Option(
        None,
        envvar="IDF_API_KEY",
        help="Bearer key (or IDF_API_KEY)",
        show_default="$IDF_API_KEY",
        show_envvar=False,
    ),
    interval: float = typer.Option(2.0, min=0.05, help="seconds between refreshes"),
    iterations: int = typer.Option(0, min=0, help="stop after N refreshes (0: until Ctrl-C)"),
):
    """A live terminal dashboard of a running service's metrics.

    Example: idf monitor --dashboard energy-metrics --url http://127.0.0.1:8000
    """
    if dashboard not in DASHBOARDS:
        raise typer.BadParameter(
            f"unknown dashboard {dashboard!r}; choose one of {', '.join(DASHBOARDS)}",
            param_hint="--dashboard",
        )
    import httpx
    from rich.live import Live

    def get():
        try:
            return scrape(url, api_key)
        except httpx.HTTPError as e:
            raise ConnectionError(f"cannot reach {url}: {e}") from e

    prev, t_prev = None, time.monotonic()
    m = get()
    n = 0
    with Live(
        render_dashboard(dashboard, m, None, 0.0), console=console(), auto_refresh=False
    ) as live:
        while True:
            n += 1
            if iterations and n >= iterations:
                break
            time.sleep(interval)
            prev, m_now, t_now = m, get(), time.monotonic()
            live.update(render_dashboard(dashboard, m_now, prev, t_now - t_prev), refresh=True)
            m, t_prev = m_now, t_now
