# SPDX-License-Identifier: Apache-2.0
"""What the songs-ms services share: tracing and its transports (tracing.py), the Flask app
skeleton, errors, input checks, JWT checks and calls to other services (service.py), SQLite
(db.py). Nothing here knows one service's routes."""
