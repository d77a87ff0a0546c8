"""The AWS clients' timeouts and retry budget: moved to :mod:`cloudkeep.clouds.aws` (this name
stays for the modules and tests that import it)."""

from __future__ import annotations

from .clouds.aws import CONNECT_TIMEOUT, MAX_ATTEMPTS, READ_TIMEOUT, RETRY_MODE, client_config, max_attempts

__all__ = ["CONNECT_TIMEOUT", "MAX_ATTEMPTS", "READ_TIMEOUT", "RETRY_MODE", "client_config", "max_attempts"]
