"""Serve a backup point as a disk: HTTP with byte ranges, NBD through nbdkit; see ``session.Serving``.

Everything served comes from verified chunks; nothing is ever written to the repository (a writable NBD
export keeps writes in a copy-on-write overlay).
"""

from .session import Address, BadAddress, Serving, parse_address

__all__ = ["Address", "BadAddress", "Serving", "parse_address"]
