"""The entry script: sign-in page, preset key, navigation after sign-in."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from services.dashboard import session
from services.dashboard.client import ApiClient
from tests.unit.dashboard.dash_helpers import ADMIN_KEY

APP = str(Path(__file__).resolve().parents[3] / "services" / "dashboard" / "app.py")


@pytest.fixture
def wired(monkeypatch, http):
    """Clients the app creates talk to the in-process API."""
    monkeypatch.setattr(session, "ApiClient", lambda url, key: ApiClient(url, key, http=http))
    monkeypatch.setenv("VIGIL_DASHBOARD_API_URL", "http://testserver")
    monkeypatch.delenv("VIGIL_DASHBOARD_API_KEY", raising=False)


def test_sign_in_with_a_key(wired, user_client, cameras):
    analyst = user_client("analyst")
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Vigil"
    at.text_input[0].input("vgl_wrong-key")
    at.button[0].click()
    at.run()
    assert "Sign-in failed" in at.error[0].value and "401" in at.error[0].value
    assert "vigil_client" not in at.session_state

    at.text_input[0].input(analyst._key)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["vigil_me"]["role"] == "analyst"
    assert at.title[0].value == "Live"  # the default page
    assert "analyst-user" in at.sidebar.markdown[0].value
    assert any(b.label == "Sign out" for b in at.sidebar.button)

    next(b for b in at.sidebar.button if b.label == "Sign out").click()
    at.run()
    assert at.title[0].value == "Vigil" and "vigil_client" not in at.session_state


def test_preset_key_signs_in_without_asking(wired, monkeypatch, cameras):
    monkeypatch.setenv("VIGIL_DASHBOARD_API_KEY", ADMIN_KEY)
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Live"
    assert not any(b.label == "Sign out" for b in at.sidebar.button)  # a shared demo key: nothing to sign out of


def test_refused_preset_key_says_so(wired, monkeypatch):
    monkeypatch.setenv("VIGIL_DASHBOARD_API_KEY", "vgl_revoked")
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert "VIGIL_DASHBOARD_API_KEY" in at.error[0].value
    assert at.title[0].value == "Vigil"
