"""The one exception of netx import and export: a user error, one line naming the file and layer."""
from __future__ import annotations

from saf.core.errors import SafError


class NetxError(SafError, ValueError):
    """A netx file saf cannot import (or a network it cannot write as netx); the message names the file
    and the layer or rule at fault."""
