"""Events page: filters, cursor pagination, table contents, opening an event."""

from __future__ import annotations

from tests.unit.dashboard.dash_helpers import make_event, page_test


def _table(at):
    return at.dataframe[0].value


def test_lists_events_newest_first_with_thumbnails(admin, cameras, seed, store):
    seed(*[make_event(i, score=0.5 + i / 100) for i in range(5)], make_event(9, thumbnail_key="evidence/x/t.jpg"))
    at = page_test("events", admin).run()
    assert not at.exception, at.exception
    df = _table(at)
    assert list(df["id"])[:2] == ["cam-a:000000009", "cam-a:000000004"]
    assert df.loc[df["id"] == "cam-a:000000009", "thumbnail"].iloc[0].startswith("http://s3.test/vigil/evidence/x/t.jpg")
    assert df.loc[df["id"] == "cam-a:000000000", "thumbnail"].isna().all()
    assert "fighting between people (0.60)" in set(df["top description"])
    assert "last page" in " ".join(c.value for c in at.caption)


def test_filters_are_sent_to_the_api(admin, cameras, seed):
    seed(make_event(1, score=0.9, severity="high"), make_event(2, score=0.55, severity="low"),
         make_event(3, camera="cam-b", score=0.95, severity="critical", status="open", text="a person falling"))
    at = page_test("events", admin).run()
    ms = at.multiselect[0]
    ms.select("cam-a")
    at.slider[0].set_value(0.6)
    at.button[0].click()  # Apply filters (the form's submit button)
    at.run()
    assert not at.exception
    assert list(_table(at)["id"]) == ["cam-a:000000001"]

    at.multiselect[0].unselect("cam-a")
    at.slider[0].set_value(0.0)
    at.text_input[0].input("falling")
    at.button[0].click()
    at.run()
    assert list(_table(at)["id"]) == ["cam-b:000000003"]


def test_cursor_pagination_walks_every_event_once(admin, cameras, seed):
    seed(*[make_event(i) for i in range(60)])
    at = page_test("events", admin).run()
    seen = list(_table(at)["id"])
    assert len(seen) == 25
    nxt = next(b for b in at.button if b.label == "Next")
    while not nxt.disabled:
        nxt.click()
        at.run()
        assert not at.exception
        seen += list(_table(at)["id"])
        nxt = next(b for b in at.button if b.label == "Next")
    assert len(seen) == 60 and len(set(seen)) == 60
    assert seen == sorted(seen, reverse=True)
    prev = next(b for b in at.button if b.label == "Previous")
    prev.click()
    at.run()
    assert list(_table(at)["id"]) == seen[25:50]


def test_open_event_goes_to_detail(admin, cameras, seed):
    seed(make_event(1), make_event(2))
    at = page_test("events", admin).run()
    at.selectbox(key=[s.key for s in at.selectbox if s.key and s.key.startswith("ev-pick")][0]).set_value("cam-a:000000001")
    next(b for b in at.button if b.label == "Open event").click()
    at.run()
    # switch_page outside st.navigation is reported as an exception by AppTest; the state was set first
    assert at.session_state["vigil_event_id"] == "cam-a:000000001"


def test_empty_result_says_so(admin, cameras):
    at = page_test("events", admin).run()
    assert not at.exception
    assert any("No events match" in i.value for i in at.info)


def test_csv_export_follows_the_filters(admin, cameras, seed):
    seed(make_event(1), make_event(2, camera="cam-b"), make_event(3, camera="cam-b"))
    at = page_test("events", admin).run()
    at.multiselect[0].select("cam-b")
    at.button[0].click()
    at.run()
    assert not [b for b in at.get("download_button")]  # nothing exported until asked
    next(b for b in at.button if b.label == "Export CSV").click()
    at.run()
    assert not at.exception, at.exception
    key, csv = at.session_state["ev_csv"]
    lines = csv.decode().strip().splitlines()
    assert lines[0].startswith("id,camera_id") and [ln.split(",")[0] for ln in lines[1:]] == [
        "cam-b:000000003", "cam-b:000000002"]
    assert len(at.get("download_button")) == 1
    at.multiselect[0].unselect("cam-b")  # other filters: the old export is not offered
    at.button[0].click()
    at.run()
    assert not at.get("download_button") and any(b.label == "Export CSV" for b in at.button)


def test_review_filters_unreviewed_and_assigned_to_me(user_client, cameras, seed, http):
    from tests.unit.dashboard.dash_helpers import make_event

    seed(*[make_event(i) for i in range(3)])
    analyst = user_client("analyst")
    ids = [e["id"] for e in analyst.events({})["items"]]
    analyst.review_event(ids[0], {"status": "acknowledged", "assignee": "analyst-user"})
    analyst.review_event(ids[1], {"status": "resolved", "resolution": "true_positive"})

    def shown(choice: str) -> list[str]:
        at = page_test("events", analyst).run()
        next(s for s in at.selectbox if s.label == "Review").set_value(choice)
        next(b for b in at.button if b.label == "Apply filters").click().run()
        assert not at.exception, at.exception
        return list(at.dataframe[0].value["id"]) if at.dataframe else []

    assert shown("assigned to me") == [ids[0]]
    assert shown("unreviewed") == [ids[2]]
    assert shown("resolved") == [ids[1]]
