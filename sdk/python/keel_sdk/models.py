"""The API's request and response models, generated from docs/openapi.json (``_models.py``)."""

from keel_sdk._models import *  # noqa: F403
