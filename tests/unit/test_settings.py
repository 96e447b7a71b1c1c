"""Settings from the environment: defaults, and one-line errors that name the variable to fix
without ever echoing the password."""

import pytest

from pipeline.evo.errors import ConfigError
from pipeline.evo.settings import EvoVoiceSettings

BASE = {
    "EVO_VOICE_BASE_URL": "https://evovoice.io",
    "EVO_VOICE_USERNAME": "ops@example.com",
    "EVO_VOICE_PASSWORD": "hunter2-Secret",
}


def test_defaults():
    settings = EvoVoiceSettings.from_env(BASE)
    assert (settings.auth, settings.timezone, settings.page_size, settings.concurrency) == (
        "credentials",
        "UTC",
        100,
        4,
    )
    assert settings.account_ids == ()
    assert "hunter2-Secret" not in repr(settings)


def test_values_are_parsed():
    settings = EvoVoiceSettings.from_env(
        BASE
        | {
            "EVO_VOICE_AUTH": "Basic",
            "EVO_VOICE_ACCOUNT_IDS": " a, b ,,c",
            "EVO_VOICE_TIMEZONE": "America/Chicago",
            "EVO_VOICE_PAGE_SIZE": "250",
        }
    )
    assert settings.auth == "basic" and settings.account_ids == ("a", "b", "c")
    assert settings.page_size == 250 and str(settings.zone) == "America/Chicago"


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"EVO_VOICE_BASE_URL": ""}, "EVO_VOICE_BASE_URL"),
        ({"EVO_VOICE_BASE_URL": "evovoice.io"}, "EVO_VOICE_BASE_URL"),
        ({"EVO_VOICE_AUTH": "oauth"}, "EVO_VOICE_AUTH"),
        ({"EVO_VOICE_TIMEZONE": "Mars/Olympus"}, "EVO_VOICE_TIMEZONE"),
        ({"EVO_VOICE_PAGE_SIZE": "lots"}, "EVO_VOICE_PAGE_SIZE"),
        ({"EVO_VOICE_PAGE_SIZE": "0"}, "EVO_VOICE_PAGE_SIZE"),
        ({"EVO_VOICE_CONCURRENCY": "-1"}, "EVO_VOICE_CONCURRENCY"),
    ],
)
def test_bad_values_name_the_variable(override, variable):
    with pytest.raises(ConfigError) as caught:
        EvoVoiceSettings.from_env(BASE | override)
    message = str(caught.value)
    assert message.startswith(variable) or variable in message
    assert "\n" not in message and "hunter2-Secret" not in message
