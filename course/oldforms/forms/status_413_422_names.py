"""Probe of status_413_422_names.yml: runs the old form, prints one JSON line."""

import warnings

from probekit import emit

from fastapi import status
from starlette.exceptions import StarletteDeprecationWarning
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    old = [status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, status.HTTP_422_UNPROCESSABLE_ENTITY]
emit(old=old, today=[status.HTTP_413_CONTENT_TOO_LARGE, status.HTTP_422_UNPROCESSABLE_CONTENT],
     warnings=[w.category.__name__ for w in caught], messages=[str(w.message) for w in caught],
     user_warning=issubclass(StarletteDeprecationWarning, UserWarning))
