"""The one exception of NIR import and export: a user error, one line naming the file, node or edge."""
from __future__ import annotations

from saf.core.errors import SafError


class NirError(SafError, ValueError):
    """A NIR file saf cannot import (or a run it cannot write as NIR); the message names the file
    and the node, edge or flag at fault."""
