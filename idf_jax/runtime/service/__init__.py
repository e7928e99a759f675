"""The idf-jax HTTP/WebSocket service (FastAPI): `create_app(load_config(...))`."""

from .batching import MicroBatcher as MicroBatcher
from .config import Limits as Limits
from .config import ServiceConfig as ServiceConfig
from .config import load_config as load_config


def create_app(config):
    """Build the FastAPI app for a `ServiceConfig` (imports FastAPI on first use)."""
    from .app import create_app as _create

    return _create(config)


__all__ = ["Limits", "MicroBatcher", "ServiceConfig", "create_app", "load_config"]
