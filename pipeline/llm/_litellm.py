"""The one place litellm is imported, so its import-time settings are always right."""

from __future__ import annotations

import os

# Without this litellm fetches its price list from the network at import and waits for it.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("LITELLM_LOG", "ERROR")

import litellm

litellm.telemetry = False
litellm.suppress_debug_info = True
litellm.drop_params = True  # a parameter a provider lacks is dropped, not an error

__all__ = ["litellm"]
