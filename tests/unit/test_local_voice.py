"""The local provider's speech says the words with eSpeak NG (the `speech` extra, installed by
`make test`), and makes its tones without it: what it says is not a tone (a voice puts energy
in the bands above 1.5 kHz, a hundred times the tones' share), and takes longer the more there
is to say."""

from __future__ import annotations

import pytest

from providers import espeak
from providers.local import AUDIO_CONTAINERS, encode_audio
from tests.media_checks import decoded_pcm, high_band_share

SHORT = "Hello."
LONG = "Hello from mediagate. This sentence is a good deal longer than the first one was."


@pytest.fixture(scope="module")
def voice() -> espeak.Espeak:
    engine = espeak.engine()
    assert engine is not None, "eSpeak NG did not load: install the speech extra (make install)"
    return engine


def _said(text: str, voice: espeak.Espeak | None, fmt: str = "wav", speed: float = 1.0) -> float:
    data, _ = encode_audio(text, "alloy", fmt, speed, voice)
    samples, rate = decoded_pcm(data)
    return len(samples) / rate


def test_it_says_the_words_not_tones(voice: espeak.Espeak) -> None:
    spoken, rate = decoded_pcm(encode_audio(LONG, "nova", "wav", 1.0, voice)[0])
    toned, tone_rate = decoded_pcm(encode_audio(LONG, "nova", "wav", 1.0, None)[0])
    assert rate == tone_rate == AUDIO_CONTAINERS["wav"][3]  # resampled to the format's rate
    # Measured: a voice ~0.02 of its energy above 1.5 kHz, the tones ~0.0001.
    assert high_band_share(spoken, rate) > 0.01
    assert high_band_share(toned, tone_rate) < 0.002


def test_saying_more_takes_longer_and_speed_shortens_it(voice: espeak.Espeak) -> None:
    short, long = _said(SHORT, voice), _said(LONG, voice)
    assert 0.2 < short < 2.0 and long > 3 * short
    assert _said(LONG, voice, speed=2.0) < 0.7 * long


@pytest.mark.parametrize("fmt", sorted(AUDIO_CONTAINERS))
def test_every_format_decodes_at_its_rate(voice: espeak.Espeak, fmt: str) -> None:
    data, content_type = encode_audio(SHORT, "echo", fmt, 1.0, voice)
    samples, rate = decoded_pcm(data)
    assert content_type == f"audio/{'mpeg' if fmt == 'mp3' else 'ogg' if fmt == 'opus' else fmt}"
    assert rate == AUDIO_CONTAINERS[fmt][3] and len(samples) > rate // 5


def test_without_the_extra_it_makes_its_tones() -> None:
    assert _said(SHORT, None) > 0.2
    assert _said("", None) > 0  # nothing to say is a short silence, not an empty file
