"""Lifeboat's block-level backup engine.

Vocabulary (used consistently in code, CLI and docs):

- **root**: a folder holding one repository per VM (``ROOT/<vm>/``).
- **repository**: everything backed up from one VM, self-describing and movable (rsync it anywhere).
- **source**: where a backup reads disk bytes (``file:PATH``, ``rbd:POOL/IMAGE``).
- **revision**: one backup point; its manifest lists the chunk of every 4 MiB block (``null`` = all zero).
- **chunk**: a zstd-compressed block named by the BLAKE3 hash of its plain bytes; re-hashed on every read.
- **trust**: ``trusted`` (written, never verified), ``verified`` (every chunk re-read and intact at
  ``verified_at``) or ``distrusted`` (a chunk it needs is damaged or missing).
- **organisation key**: what opens an encrypted repository (a key file, ``--key-file``); it wraps the
  repository's data and name keys (``storage.keys``, ``storage.crypto``).

This package imports neither the portal nor the jobs.
"""
