"""cloudkeep: a serverless backup orchestrator.

The core package shared by the CLI and the scheduled functions of every cloud. Importing it is
cheap: cloud SDKs are loaded only by the adapter that needs them (see :mod:`cloudkeep.registry`).
"""

from __future__ import annotations

__version__ = "0.3.0"
FORMAT_VERSION = 1
