"""Vigil's HTTP API (FastAPI) over the SQL store and the object store.

``main`` assembles the app (``create_app(settings)``, ``serve(settings)``); ``deps`` holds
the typed dependencies (session, engine, store, caller with role); ``routes`` has one router
per resource; ``crud`` the SQL, as small keyword-only functions; ``render`` the fast JSON
rendering of event pages; ``security`` key generation, hashing and roles.
"""
