"""The service-type table: each type's questions, checks, quantity, cost and request fields."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.panel.models import Service
from bot.service_types import FALLBACK, FORMS, FieldError, Pricing, form_for


def service(type_: str = "Default", *, min_: int = 50, max_: int = 10_000,
            rate: str = "0.90", dripfeed: bool | None = None) -> Service:
    """A service row as the panel would list it."""
    return Service(service=1, name="Followers", type=type_, category="Instagram",
                   rate=Decimal(rate), min=min_, max=max_, dripfeed=dripfeed)


def fill(type_: str, answers: dict[str, str], svc: Service | None = None) -> dict[str, str]:
    """Walks the form like the wizard does, parsing each answer; returns what is sent."""
    svc = svc or service(type_, min_=1)
    form = form_for(type_)
    values: dict[str, str] = {}
    field = form.next_field(svc, values)
    while field is not None:
        if field.name in answers:
            values[field.name] = field.parse(answers[field.name], svc, values)
        else:
            assert field.optional, f"{field.name} is required"
        field = form.next_field(svc, values, after=field.name)
    return form.request_fields(svc, values)


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [
        ("Default", "Default"), ("default", "Default"), ("DEFAULT ", "Default"),
        ("SEO2", "SEO"), ("Custom Comments", "Custom Comments"),
        ("Mentions Users Followers", "Mentions User Followers"),
        ("mentions_user_followers", "Mentions User Followers"),
        ("Invites From Groups", "Invites from Groups"), ("subscriptions", "Subscriptions"),
        ("Comment Replies", "Comment Replies"), ("Package", "Package"),
    ],
)
def test_type_names_match_whatever_the_spelling(type_name: str, expected: str) -> None:
    assert form_for(type_name).type == expected


def test_unknown_type_falls_back_to_link_and_quantity_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING"):
        assert form_for("Brand New Thing") is FALLBACK
        assert form_for("Brand New Thing") is FALLBACK
    assert [f.name for f in FALLBACK.fields] == ["link", "quantity"]
    assert sum("Brand New Thing" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("type_name", "answers", "sent"),
    [
        ("Default", {"link": "https://instagram.com/a", "quantity": "1000"},
         {"link": "https://instagram.com/a", "quantity": "1000"}),
        ("SEO", {"link": "https://site.com", "quantity": "100", "keywords": "a b\n\n c \n"},
         {"link": "https://site.com", "quantity": "100", "keywords": "a b\nc"}),
        ("Mentions Custom List", {"link": "https://x.com/p/1", "usernames": "@a\r\nb"},
         {"link": "https://x.com/p/1", "usernames": "@a\nb"}),
        ("Poll", {"link": "https://t.me/c/1", "quantity": "100", "answer_number": "2"},
         {"link": "https://t.me/c/1", "quantity": "100", "answer_number": "2"}),
        ("Package", {"link": "https://x.com/a"}, {"link": "https://x.com/a"}),
        ("Mentions", {"link": "https://x.com/a", "quantity": "60", "usernames": "@a\nb"},
         {"link": "https://x.com/a", "quantity": "60", "usernames": "@a\nb"}),
        ("Mentions with Hashtags",
         {"link": "https://x.com/a", "quantity": "60", "usernames": "a", "hashtags": "#x"},
         {"link": "https://x.com/a", "quantity": "60", "usernames": "a", "hashtags": "#x"}),
        ("Mentions Hashtag", {"link": "https://x.com/a", "quantity": "60", "hashtag": "#x"},
         {"link": "https://x.com/a", "quantity": "60", "hashtag": "#x"}),
        ("Mentions User Followers",
         {"link": "https://x.com/a", "quantity": "60", "username": "@bob"},
         {"link": "https://x.com/a", "quantity": "60", "username": "bob"}),
        ("Mentions Media Likers",
         {"link": "https://x.com/a", "quantity": "60", "media": "https://x.com/p/2"},
         {"link": "https://x.com/a", "quantity": "60", "media": "https://x.com/p/2"}),
        ("Comment Likes", {"link": "https://x.com/a", "quantity": "60", "username": "bob"},
         {"link": "https://x.com/a", "quantity": "60", "username": "bob"}),
        ("Invites from Groups", {"link": "https://x.com/a", "quantity": "60", "groups": "g1\ng2"},
         {"link": "https://x.com/a", "quantity": "60", "groups": "g1\ng2"}),
    ],
)
def test_each_type_sends_exactly_its_fields(
    type_name: str, answers: dict[str, str], sent: dict[str, str]
) -> None:
    assert fill(type_name, answers) == sent


def test_custom_lists_count_lines_as_quantity_within_bounds() -> None:
    svc = service("Custom Comments", min_=2, max_=3)
    form = form_for("Custom Comments")
    comments = form.field("comments")
    with pytest.raises(FieldError, match="1 line; this service takes 2–3"):
        comments.parse("only one", svc, {})
    with pytest.raises(FieldError, match="4 lines"):
        comments.parse("a\nb\nc\nd", svc, {})
    values = {"link": "https://x.com", "comments": comments.parse("a\n\nb\n", svc, {})}
    assert form.quantity(values) == 2
    assert form.cost(svc, values) == Decimal("0.0018")


def test_mentions_custom_list_counts_usernames() -> None:
    svc = service("Mentions Custom List", min_=1, max_=100, rate="10")
    assert fill("Mentions Custom List", {"link": "x.com/a", "usernames": "a\nb\nc"}, svc) == {
        "link": "https://x.com/a", "usernames": "a\nb\nc"}
    form = form_for("Mentions Custom List")
    assert form.quantity({"usernames": "a\nb\nc"}) == 3


def test_quantity_outside_service_bounds_is_refused_with_the_bounds() -> None:
    svc = service()
    quantity = form_for("Default").field("quantity")
    with pytest.raises(FieldError, match="between 50 and 10,000"):
        quantity.parse("49", svc, {})
    with pytest.raises(FieldError, match="between 50 and 10,000"):
        quantity.parse("10001", svc, {})
    with pytest.raises(FieldError, match="whole number"):
        quantity.parse("1e3", svc, {})
    assert quantity.parse("1,000", svc, {}) == "1000"


def test_dripfeed_runs_times_quantity_may_not_exceed_max() -> None:
    svc = service(max_=1000)
    form = form_for("Default")
    values = {"link": "https://x.com", "quantity": "300"}
    runs = form.field("runs")
    assert runs.applies(svc, values)
    with pytest.raises(FieldError, match="at least 2"):
        runs.parse("1", svc, values)
    with pytest.raises(FieldError, match="over the service's maximum"):
        runs.parse("4", svc, values)
    values["runs"] = runs.parse("3", svc, values)
    interval = form.field("interval")
    assert interval.applies(svc, values)
    with pytest.raises(FieldError, match="at least 1"):
        interval.parse("0", svc, values)
    values["interval"] = interval.parse("30", svc, values)
    assert form.quantity(values) == 900
    assert form.cost(svc, values) == Decimal("0.81")
    assert form.request_fields(svc, values) == {
        "link": "https://x.com", "quantity": "300", "runs": "3", "interval": "30"}


def test_skipped_dripfeed_asks_no_interval_and_sends_neither() -> None:
    svc = service()
    form = form_for("Default")
    values = {"link": "https://x.com", "quantity": "300"}
    after_runs = form.next_field(svc, values, after="runs")
    assert after_runs is None
    assert "runs" not in form.request_fields(svc, values)


def test_dripfeed_not_offered_when_the_panel_says_the_service_has_none() -> None:
    svc = service(dripfeed=False)
    form = form_for("Default")
    assert form.next_field(svc, {"link": "x", "quantity": "100"}, after="quantity") is None


def test_subscription_fields_and_checks() -> None:
    svc = service("Subscriptions", min_=100, max_=1000, rate="2")
    form = form_for("Subscriptions")
    future = (date.today() + timedelta(days=30)).strftime("%d/%m/%Y")
    sent = fill("Subscriptions", {"username": "@acme", "min": "100", "max": "200",
                                  "delay": "30", "expiry": future}, svc)
    assert sent == {"username": "acme", "min": "100", "max": "200", "delay": "30",
                    "expiry": future}
    with pytest.raises(FieldError, match="cannot be below min"):
        form.field("max").parse("120", svc, {"min": "150"})
    with pytest.raises(FieldError, match="Choose one of"):
        form.field("delay").parse("7", svc, {})
    with pytest.raises(FieldError, match="future"):
        form.field("expiry").parse(date.today().strftime("%d/%m/%Y"), svc, {})
    with pytest.raises(FieldError, match="day/month/year"):
        form.field("expiry").parse("2030-12-31x", svc, {})
    assert form.field("expiry").parse("1/2/2099", svc, {}) == "01/02/2099"
    assert form.pricing is Pricing.PER_POST
    assert form.cost(svc, {"max": "200"}) == Decimal("0.4")


def test_package_costs_its_rate() -> None:
    svc = service("Package", rate="12.5")
    assert form_for("Package").cost(svc, {"link": "https://x.com"}) == Decimal("12.5")


@pytest.mark.parametrize("bad", ["not a link", "http://", "ftp//x", "https://nodot", "a b.com"])
def test_bad_links_are_refused(bad: str) -> None:
    with pytest.raises(FieldError, match="link"):
        form_for("Default").field("link").parse(bad, service(), {})


def test_bare_domain_link_gets_https() -> None:
    assert form_for("Default").field("link").parse("instagram.com/me", service(), {}) == (
        "https://instagram.com/me")


def test_every_form_has_a_question_with_an_example() -> None:
    for form in (*FORMS, FALLBACK):
        for field in form.fields:
            assert "Example:" in field.question(service(form.type))


@given(st.text(max_size=200))
def test_any_text_is_accepted_or_refused_with_a_one_line_reason(text: str) -> None:
    svc = service("Subscriptions", min_=10, max_=500)
    for form in (*FORMS, FALLBACK):
        for field in form.fields:
            try:
                value = field.parse(text, svc, {"min": "10", "quantity": "100"})
            except FieldError as exc:
                reason = str(exc)
                assert reason and "\n" not in reason and len(reason) < 200
            else:
                assert value == value.strip() and value
