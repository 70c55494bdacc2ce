"""A voice that says the words, for the local provider: eSpeak NG, loaded from the
`espeakng-loader` wheel (which carries the library and its voice data; no system package). eSpeak
NG is GPL-3.0, so it comes with the optional `speech` extra (`pip install mediagate[speech]`), not
as a dependency: without it `engine()` is None, and the local provider makes its tones.

The library keeps global state and is not thread-safe: one engine per process, one synthesis at a
time (a lock), each run in a worker thread by its caller."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import threading
from typing import Any

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
CHARS_UTF8 = 1
RATE_PARAMETER = 1
DEFAULT_WORDS_PER_MINUTE = 175
VOICES = ("en-us", "en-us+f3", "en-us+m3", "en-gb", "en-gb+f4", "en-us+f2", "en-gb+m4", "en-us+m7")
"""eSpeak NG voices (a language and a variant) that OpenAI's voice names map onto."""

_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class Espeak:
    def __init__(self, library: str, data: str) -> None:
        lib = ctypes.CDLL(library)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
        if rate <= 0:
            raise OSError("eSpeak NG did not initialise")
        self.rate: int = rate
        """Samples per second of what it says (16-bit mono)."""
        self._lib = lib
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        # Kept on the object: the library calls it for as long as the process lives.
        self._callback = _Callback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, samples: int, _events: Any) -> int:
        if wav and samples > 0:
            self._chunks.append(ctypes.string_at(wav, samples * 2))
        return 0  # go on

    def say(self, text: str, voice: str, speed: float = 1.0) -> bytes:
        """`text` spoken as 16-bit mono PCM at `rate`; `voice` one of OpenAI's names (mapped onto
        VOICES), `speed` OpenAI's (0.25 to 4: eSpeak's 80 to 450 words a minute)."""
        index = hashlib.sha256(voice.encode()).digest()[0] % len(VOICES)
        words = max(80, min(450, round(DEFAULT_WORDS_PER_MINUTE * speed)))
        encoded = text.encode() + b"\0"
        with self._lock:
            self._chunks = []
            self._lib.espeak_SetVoiceByName(VOICES[index].encode())
            self._lib.espeak_SetParameter(RATE_PARAMETER, words, 0)
            error = self._lib.espeak_Synth(
                encoded, len(encoded), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None
            )
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if error != 0:
            raise OSError(f"eSpeak NG could not say it (error {error})")
        return b"".join(chunks)


@functools.cache
def engine() -> Espeak | None:
    """The process's eSpeak NG, or None without the `speech` extra (or where it cannot load)."""
    try:
        import espeakng_loader
    except ImportError:
        return None
    try:
        return Espeak(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())
    except OSError:
        return None
