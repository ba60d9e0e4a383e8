"""The analysts' dashboard (Streamlit): ``streamlit run services/dashboard/app.py``.

- ``app.py``: entry; sign-in (or the preset ``VIGIL_DASHBOARD_API_KEY``), then ``st.navigation``.
- ``client.py``: the only way to data: the REST API with the signed-in user's key.
- ``session.py``: who is signed in; ``data.py``: cached reads (short TTLs, one partition per user).
- ``views/``: Live, Events, Event detail, Prompts, Models, Cameras; ``charts.py``: plotly figures.
- ``preview.py``: which descriptions of an edited prompt set would fire on an event's clip.

Endpoints the dashboard uses when the API has them and explains their absence otherwise:
``GET /cameras/{id}/scores`` (segment scores over a time range: the score timeline and the
Live sparklines), ``GET /cameras/{id}/health`` (ingest state), and
``POST /contexts/{c}/prompt-sets/{n}/preview`` (server-side prompt preview).
"""
