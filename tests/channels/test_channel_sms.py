"""SMS through 46elks and Twilio: documented form fields and auth, per-recipient failures."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from support.receivers import HttpRecorder, closed_port

from blocks.channels import ChannelError, FortySixElksChannel, Message, TwilioChannel
from blocks.channels.sms import fit_parts, sms_text

ELKS_USER = "u2c1e6a3b9f7d8e0a1b2c3d4e5f60718"
ELKS_PASSWORD = "E1kSecretApiPassw0rd9C"
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token-5ecret-0987"
ON_CALL = ("+46701234567", "+46709876543")
EXPECTED_TEXT = (
    "[CRITICAL] Database connection lost - "
    "database_connections == 0 for 2 minutes. Complete service outage."
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _elks(recorder: HttpRecorder, password: str = ELKS_PASSWORD) -> FortySixElksChannel:
    return FortySixElksChannel(
        ELKS_USER, password, "FeedbackOps", ON_CALL, api_url=f"{recorder.url}/a1/sms", timeout=5
    )


def _twilio(recorder: HttpRecorder, token: str = TWILIO_TOKEN) -> TwilioChannel:
    return TwilioChannel(TWILIO_SID, token, "+46766861004", ON_CALL, api_base=recorder.url)


def _assert_secret_free(err: ChannelError) -> None:
    for shown in (str(err), repr(err)):
        for secret in (ELKS_PASSWORD, TWILIO_TOKEN, TWILIO_SID):
            assert secret not in shown
    assert "\n" not in str(err)


# --- 46elks ----------------------------------------------------------------------------------


def test_46elks_gets_one_documented_form_post_per_recipient(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.require_basic_auth("/a1/sms", ELKS_USER, ELKS_PASSWORD)

    delivery = _elks(http_recorder).send(alert)

    requests = http_recorder.requests("/a1/sms")
    assert [r.form for r in requests] == [
        {"from": "FeedbackOps", "to": number, "message": EXPECTED_TEXT} for number in ON_CALL
    ]
    for request in requests:
        assert request.method == "POST" and request.path == "/a1/sms"
        assert request.headers["authorization"] == _basic(ELKS_USER, ELKS_PASSWORD)
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (delivery.channel, delivery.recipients, delivery.status_code) == ("sms", ON_CALL, 200)
    assert delivery.provider_id is not None
    ids = delivery.provider_id.split(",")
    assert len(ids) == 2 and all(i.startswith("s") for i in ids)


def test_escalation_recipients_replace_the_configured_numbers(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    delivery = _elks(http_recorder).send(alert, recipients=["+46731112233"])

    assert delivery.recipients == ("+46731112233",)
    assert [r.form["to"] for r in http_recorder.requests("/a1/sms") if r.form] == ["+46731112233"]


def test_46elks_rejecting_the_credentials_is_permanent(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.require_basic_auth("/a1/sms", ELKS_USER, ELKS_PASSWORD)

    with pytest.raises(ChannelError) as caught:
        _elks(http_recorder, password="wrong-" + ELKS_PASSWORD).send(alert)

    err = caught.value
    assert str(err) == "sms: 46elks rejected the API credentials (HTTP 401)"
    assert (err.transient, err.status, err.failed_recipients) == (False, 401, ON_CALL)
    _assert_secret_free(err)
    assert "wrong-" not in str(err)
    assert len(http_recorder.requests("/a1/sms")) == 1  # the same credentials fail for all


def test_one_failing_recipient_is_named_and_the_others_still_get_it(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.fail("/a1/sms", 403, "Invalid to number")  # the first request only
    numbers = ["+4670000001", *ON_CALL]

    with pytest.raises(ChannelError) as caught:
        _elks(http_recorder).send(alert, recipients=numbers)

    err = caught.value
    assert [r.form["to"] for r in http_recorder.requests("/a1/sms") if r.form] == numbers
    assert (err.transient, err.status, err.failed_recipients) == (False, 403, ("+4670000001",))
    assert str(err) == (
        "sms: 46elks could not send to 1 of 3 recipients: "
        "+*******001 (46elks answered HTTP 403: Invalid to number); "
        "sent to +********567, +********543"
    )
    assert err.delivery is not None and err.delivery.recipients == ON_CALL
    _assert_secret_free(err)


def test_failures_that_all_are_transient_make_a_transient_error(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.fail("/a1/sms", 429, "Too many requests", headers={"Retry-After": "2"}, times=2)

    with pytest.raises(ChannelError) as caught:
        _elks(http_recorder).send(alert)

    err = caught.value
    assert (err.transient, err.status, err.retry_after) == (True, 429, 2.0)
    assert err.failed_recipients == ON_CALL and err.delivery is None


def test_unreachable_46elks_is_transient(alert: Message) -> None:
    url = f"http://127.0.0.1:{closed_port()}/a1/sms"
    channel = FortySixElksChannel(ELKS_USER, ELKS_PASSWORD, "FeedbackOps", ON_CALL, api_url=url)

    with pytest.raises(ChannelError) as caught:
        channel.send(alert)

    assert caught.value.transient and caught.value.failed_recipients == ON_CALL
    assert "connection refused" in str(caught.value)
    _assert_secret_free(caught.value)


# --- Twilio ----------------------------------------------------------------------------------


def test_twilio_gets_the_documented_form_at_the_account_messages_path(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.require_basic_auth("/2010-04-01/", TWILIO_SID, TWILIO_TOKEN)

    delivery = _twilio(http_recorder).send(alert)

    requests = http_recorder.requests("/2010-04-01/")
    assert [r.path for r in requests] == [f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"] * 2
    assert [r.form for r in requests] == [
        {"To": number, "From": "+46766861004", "Body": EXPECTED_TEXT} for number in ON_CALL
    ]
    for request in requests:
        assert request.headers["authorization"] == _basic(TWILIO_SID, TWILIO_TOKEN)
    assert (delivery.recipients, delivery.status_code) == (ON_CALL, 201)
    assert delivery.provider_id is not None
    assert all(sid.startswith("SM") for sid in delivery.provider_id.split(","))


def test_twilio_rejecting_the_token_is_permanent(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.require_basic_auth(
        "/2010-04-01/",
        TWILIO_SID,
        TWILIO_TOKEN,
        body={
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        },
    )

    with pytest.raises(ChannelError) as caught:
        _twilio(http_recorder, token="not-the-token").send(alert)

    err = caught.value
    assert str(err) == (
        "sms: Twilio rejected the account SID and auth token "
        "(HTTP 401: Authenticate (Twilio error 20003))"
    )
    assert (err.transient, err.status) == (False, 401)
    _assert_secret_free(err)


def test_twilio_invalid_number_names_the_recipient(
    http_recorder: HttpRecorder, alert: Message
) -> None:
    http_recorder.fail(
        "/2010-04-01/",
        400,
        {
            "code": 21211,
            "message": "Invalid 'To' Phone Number",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400,
        },
    )

    with pytest.raises(ChannelError) as caught:
        _twilio(http_recorder).send(alert)

    err = caught.value
    assert err.failed_recipients == (ON_CALL[0],) and not err.transient
    assert "+********567 (Twilio answered HTTP 400: Invalid 'To' Phone Number" in str(err)
    assert "(Twilio error 21211)" in str(err)
    assert len(http_recorder.requests("/2010-04-01/")) == 2


def test_reprs_hold_no_secrets() -> None:
    elks = FortySixElksChannel(ELKS_USER, ELKS_PASSWORD, "FeedbackOps", ON_CALL)
    twilio = TwilioChannel(TWILIO_SID, TWILIO_TOKEN, "+46766861004", ON_CALL)
    for shown in (repr(elks), repr(twilio)):
        assert ELKS_PASSWORD not in shown and TWILIO_TOKEN not in shown
        assert TWILIO_SID not in shown


# --- the text --------------------------------------------------------------------------------


def test_text_fits_three_gsm_parts_and_keeps_swedish_letters(alert: Message) -> None:
    long = dataclasses.replace(
        alert,
        severity="high",
        title="Kassasystem nere i Malmö – åtgärda",
        body="Ärende: " + "ö" * 1000,
    )

    text = sms_text(long)

    assert text.startswith("[HIGH] Kassasystem nere i Malmö - åtgärda - Ärende: ööö")
    # 459 septets = 3 parts; "[" and "]" are GSM-7 extension characters, two septets each.
    assert len(text) + 2 == 3 * 153 and text.endswith("...")


def test_text_with_emoji_fits_three_ucs2_parts() -> None:
    text = fit_parts("Disk full 🔥 " + "x" * 500)
    assert len(text.encode("utf-16-le")) // 2 <= 3 * 67 and text.endswith("...")
    assert fit_parts("short") == "short"


def test_resolve_text_says_resolved(alert: Message) -> None:
    text = sms_text(dataclasses.replace(alert, action="resolve", body=""))
    assert text == "[RESOLVED] Database connection lost"
