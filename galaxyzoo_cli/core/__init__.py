"""The core: what every layer shares, without torch (numpy allowed).

Errors and messages (errors), atomic files and strict JSON (files), progress reporting (progress),
signal handling (signals), the settings of every command (settings), the Galaxy Zoo decision tree
(schema) and tasks of one's own labels (tasks), a run's summary (summary), metrics (metrics) and
provenance records (provenance).

Layer rule: a module here imports only from ``galaxyzoo_cli.core`` (and ``galaxyzoo_cli._version``).
Layers, bottom to top: core → data → models → training → inference → outputs → cli; a module may
import from its own layer and lower ones only (tests/test_layout.py checks it).
"""
