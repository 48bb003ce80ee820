"""The Secret type: redacted in repr, str, format, logs and exceptions; revealed only on purpose."""

from __future__ import annotations

import logging
import pickle

import pytest

from shared.secret import Secret

VALUE = "live_999_TopSecretValue1234"


@pytest.mark.parametrize(
    "render",
    [
        repr,
        str,
        lambda s: f"{s}",
        lambda s: f"{s!r}",
        lambda s: "%s" % s,  # noqa: UP031
        lambda s: str([s]),
        lambda s: str({"k": s}),
    ],
)
def test_every_rendering_is_redacted(render: object) -> None:
    text = render(Secret(VALUE))  # type: ignore[operator]
    assert VALUE not in text and "****" in text


def test_reveal_hint_and_comparison() -> None:
    s = Secret(VALUE)
    assert s.reveal() == VALUE and s.hint == "****1234"
    assert Secret("short").hint == "****"
    assert s == Secret(VALUE) and s != Secret("other")
    assert bool(s) and not Secret("")


def test_it_cannot_be_changed_hashed_or_pickled() -> None:
    s = Secret(VALUE)
    with pytest.raises(AttributeError):
        s._value = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_a_log_line_and_an_exception_show_no_value(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret(VALUE)
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("resolved %s", s, extra={"value": s})
    assert VALUE not in caplog.text
    try:
        raise ValueError(f"bad key {s}")
    except ValueError as exc:
        assert VALUE not in str(exc)
