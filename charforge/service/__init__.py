"""charforge over HTTP: `create_app(ServiceSettings(...))`, served by `charforge serve`."""

from charforge.service.app import create_app
from charforge.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
