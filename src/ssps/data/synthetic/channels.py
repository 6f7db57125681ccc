"""Recording channels of the synthetic corpus: one `SessionChannel` per session.

A session (a "video") draws one channel with `sample_channel`: a shoebox room impulse
response (pyroomacoustics image sources for the early part plus an exponentially decaying
two-band noise tail reaching the drawn RT60), a microphone colouration (high-pass roll-off,
shelves and peaking biquads), a background noise bed (coloured noise, babble of other
synthetic voices, or mains hum) with a nominal SNR, a band/codec effect (none, telephone
300-3400 Hz, 8-bit mu-law, low-pass) and a recording gain. `apply_channel` records one clean
utterance through it; only the noise excerpt differs between the utterances of a session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt, sosfreqz

from .voices import sample_voice, synthesize_speech

BAND_EFFECTS = ("none", "telephone", "mulaw", "lowpass")
BAND_EFFECT_PROBABILITIES = (0.5, 0.1, 0.25, 0.15)
NOISE_KINDS = ("coloured", "babble", "hum")
NOISE_KIND_PROBABILITIES = (0.45, 0.35, 0.2)
SPEED_OF_SOUND = 343.0
IMAGE_SOURCE_ORDER = 10  # exact reflections up to this order; a noise tail after them
LIMITER_KNEE = 0.5  # samples below this level pass the output limiter unchanged


@dataclass
class SessionChannel:
    """Everything a session's recordings share; `apply_channel` uses it."""

    sample_rate: int
    rt60_s: float
    rir: np.ndarray  # (L,) room impulse response, unit energy
    eq_sos: np.ndarray  # (n, 6) microphone colouration
    band_effect: str  # one of BAND_EFFECTS
    band_sos: np.ndarray  # (m, 6) band-limiting filter; (0, 6) for none / mulaw
    noise_kind: str  # one of NOISE_KINDS
    noise_bed: np.ndarray  # (M,) unit-RMS background; each utterance takes an excerpt
    snr_db: float
    gain_db: float


def _sabine_absorption(room: np.ndarray, rt60_s: float) -> float:
    """Energy absorption of all walls that gives `rt60_s` by Sabine's formula (capped)."""
    volume = float(np.prod(room))
    surface = 2.0 * (room[0] * room[1] + room[0] * room[2] + room[1] * room[2])
    return min(24.0 * np.log(10.0) * volume / (SPEED_OF_SOUND * surface * rt60_s), 0.95)


def room_impulse_response(rng: np.random.Generator, sample_rate: int) -> tuple[np.ndarray, float]:
    """A random shoebox room's (unit-energy RIR, RT60 s); RT60 uniform in 0.15-0.9 s."""
    # pyroomacoustics takes about a second to import; only channel sampling needs it.
    import pyroomacoustics as pra

    room = np.array([rng.uniform(3.0, 10.0), rng.uniform(2.5, 8.0), rng.uniform(2.4, 4.0)])
    rt60 = float(rng.uniform(0.15, 0.9))
    margin = 0.4
    microphone = rng.uniform(margin, room - margin)
    source = rng.uniform(margin, room - margin)
    for _ in range(50):
        if 0.4 <= np.linalg.norm(source - microphone) <= 4.0:
            break
        source = rng.uniform(margin, room - margin)
    shoebox = pra.ShoeBox(
        room,
        fs=sample_rate,
        materials=pra.Material(_sabine_absorption(room, rt60)),
        max_order=IMAGE_SOURCE_ORDER,
    )
    shoebox.add_source(source)
    shoebox.add_microphone(microphone)
    shoebox.compute_rir()
    early = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    rir = _add_reverberant_tail(early, room, rt60, sample_rate, rng)
    return rir / np.sqrt(np.sum(rir**2)), rt60


def _add_reverberant_tail(
    early: np.ndarray, room: np.ndarray, rt60: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Replace the incomplete image-source tail by decaying noise (highs decay faster)."""
    complete = int(IMAGE_SOURCE_ORDER * room.min() / SPEED_OF_SOUND * sample_rate)
    complete = min(complete, early.size - 1)
    fade = int(0.02 * sample_rate)
    start = max(complete - fade, 0)
    reference = early[max(start - fade, 0) : start + 1]
    level = float(np.sqrt(np.mean(reference**2)))
    length = start + int(0.8 * rt60 * sample_rate) + fade
    t = np.arange(length - start) / sample_rate
    noise = rng.standard_normal((2, t.size))
    crossover = butter(2, 3000.0, fs=sample_rate, output="sos")
    low = sosfilt(crossover, noise[0]) * np.exp(-3.0 * np.log(10.0) * t / rt60)
    high = (noise[1] - sosfilt(crossover, noise[1])) * np.exp(-5.0 * np.log(10.0) * t / rt60)
    tail = level * (low + high)
    ramp = np.sin(0.5 * np.pi * np.minimum(np.arange(t.size) / fade, 1.0)) ** 2
    rir = np.zeros(length)
    kept = min(early.size, length)
    rir[:kept] = early[:kept]
    rir[start:] = rir[start:] * (1.0 - ramp) + tail * ramp
    return rir


def _biquad(kind: str, freq: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """(6,) RBJ-cookbook peaking / low-shelf / high-shelf biquad as one sos row."""
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2.0 * q)
    cos_w0 = np.cos(w0)
    if kind == "peak":
        b = [1 + alpha * amp, -2 * cos_w0, 1 - alpha * amp]
        a = [1 + alpha / amp, -2 * cos_w0, 1 - alpha / amp]
    else:
        sign = 1.0 if kind == "lowshelf" else -1.0
        root = 2.0 * np.sqrt(amp) * alpha
        b = [
            amp * ((amp + 1) - sign * (amp - 1) * cos_w0 + root),
            sign * 2 * amp * ((amp - 1) - sign * (amp + 1) * cos_w0),
            amp * ((amp + 1) - sign * (amp - 1) * cos_w0 - root),
        ]
        a = [
            (amp + 1) + sign * (amp - 1) * cos_w0 + root,
            -sign * 2 * ((amp - 1) + sign * (amp + 1) * cos_w0),
            (amp + 1) + sign * (amp - 1) * cos_w0 - root,
        ]
    return np.array(b + a) / a[0]


def microphone_eq(rng: np.random.Generator, sample_rate: int, spread: float = 1.0) -> np.ndarray:
    """(n, 6) sos: a random high-pass roll-off, two shelves and 2-4 resonant peaks/dips;
    `spread` scales every shelf and peak gain in dB (0: flat apart from the high-pass).

    The filter is scaled to unit mean power gain over 100-4000 Hz, so it colours the
    sound without changing its level much (the session gain sets the level).
    """
    nyquist = sample_rate / 2.0
    rows = [butter(2, rng.uniform(40.0, 250.0), "highpass", fs=sample_rate, output="sos")[0]]
    low_shelf = rng.uniform(150, 500)
    rows.append(_biquad("lowshelf", low_shelf, spread * rng.uniform(-6, 6), 0.7, sample_rate))
    high_shelf = min(rng.uniform(2500, 6000), 0.8 * nyquist)
    rows.append(_biquad("highshelf", high_shelf, spread * rng.uniform(-9, 6), 0.7, sample_rate))
    for _ in range(int(rng.integers(2, 5))):
        freq = float(np.exp(rng.uniform(np.log(150.0), np.log(0.75 * nyquist))))
        gain = spread * rng.uniform(-10, 10)
        rows.append(_biquad("peak", freq, gain, rng.uniform(0.7, 4.0), sample_rate))
    sos = np.stack(rows)
    _, response = sosfreqz(sos, np.linspace(100.0, 4000.0, 64), fs=sample_rate)
    sos[0, :3] /= np.sqrt(np.mean(np.abs(response) ** 2))
    return sos


def _band_filter(effect: str, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """(m, 6) sos of a band effect; empty for effects that are not filters."""
    if effect == "telephone":
        return butter(
            4, [300.0, min(3400.0, 0.45 * sample_rate)], "bandpass", fs=sample_rate, output="sos"
        )
    if effect == "lowpass":
        cutoff = rng.uniform(0.45, 0.9) * sample_rate / 2.0
        return butter(8, cutoff, "lowpass", fs=sample_rate, output="sos")
    return np.zeros((0, 6))


def _coloured_noise(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Noise with a 1/f^beta spectrum (beta 0-2) and one random broad bump."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 20.0)
    bump_hz, bump_octaves = np.exp(rng.uniform(np.log(100.0), np.log(4000.0))), rng.uniform(0.5, 2)
    bump_db = rng.uniform(0.0, 15.0) * np.exp(-0.5 * (np.log2(freqs / bump_hz) / bump_octaves) ** 2)
    shape = freqs ** (-rng.uniform(0.0, 2.0) / 2.0) * 10.0 ** (bump_db / 20.0)
    return np.fft.irfft(spectrum * shape, n)


def _hum(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics) over a faint coloured-noise floor."""
    mains = float(rng.choice([50.0, 60.0]))
    t = np.arange(n) / sample_rate
    harmonics = np.arange(1, 16)
    amplitudes = rng.uniform(0.0, 1.0, harmonics.size) / harmonics ** rng.uniform(0.5, 1.5)
    phases = rng.uniform(0.0, 2.0 * np.pi, harmonics.size)
    hum = np.sin(2.0 * np.pi * mains * harmonics[:, None] * t + phases[:, None])
    floor = _coloured_noise(rng, n, sample_rate)
    hum = amplitudes @ hum
    return hum / np.std(hum) + 0.3 * floor / np.std(floor)


def _babble(rng: np.random.Generator, n: int, sample_rate: int, rir: np.ndarray) -> np.ndarray:
    """3-6 other synthetic talkers at random levels, in the session's room."""
    talkers = [
        synthesize_speech(sample_voice(rng), n, sample_rate, rng) * rng.uniform(0.3, 1.0)
        for _ in range(int(rng.integers(3, 7)))
    ]
    return fftconvolve(np.sum(talkers, axis=0), rir)[:n]


def band_effect_probabilities(spread: float) -> np.ndarray:
    """Probabilities of BAND_EFFECTS: "none" has BAND_EFFECT_PROBABILITIES[0] ** spread, the
    effects share the rest in their default proportions (spread 1: the defaults)."""
    none = BAND_EFFECT_PROBABILITIES[0] ** spread
    effects = np.array(BAND_EFFECT_PROBABILITIES[1:])
    return np.concatenate([[none], (1.0 - none) * effects / effects.sum()])


def sample_channel(
    rng: np.random.Generator,
    sample_rate: int,
    noise_seconds: float,
    snr_range_db: tuple[float, float] = (5.0, 25.0),
    spread: float = 1.0,
) -> SessionChannel:
    """Draw one session's channel; its noise bed lasts `noise_seconds`, its SNR is uniform
    in `snr_range_db`. `spread` sets how far channels differ in what a reverb + noise
    augmentation cannot imitate: microphone colouration gains (x spread, in dB) and how often
    a band / codec effect is present (`band_effect_probabilities`)."""
    rir, rt60 = room_impulse_response(rng, sample_rate)
    eq_sos = microphone_eq(rng, sample_rate, spread)
    band_effect = str(rng.choice(BAND_EFFECTS, p=band_effect_probabilities(spread)))
    band_sos = _band_filter(band_effect, rng, sample_rate)
    noise_kind = str(rng.choice(NOISE_KINDS, p=NOISE_KIND_PROBABILITIES))
    n_noise = max(int(noise_seconds * sample_rate), sample_rate)
    if noise_kind == "babble":
        bed = _babble(rng, n_noise, sample_rate, rir)
    elif noise_kind == "hum":
        bed = _hum(rng, n_noise, sample_rate)
    else:
        bed = _coloured_noise(rng, n_noise, sample_rate)
    return SessionChannel(
        sample_rate=sample_rate,
        rt60_s=rt60,
        rir=rir,
        eq_sos=eq_sos,
        band_effect=band_effect,
        band_sos=band_sos,
        noise_kind=noise_kind,
        noise_bed=bed / np.sqrt(np.mean(bed**2)),
        snr_db=float(rng.uniform(*snr_range_db)),
        gain_db=float(rng.uniform(-10.0, 4.0)),
    )


def _mulaw_8bit(wave: np.ndarray) -> np.ndarray:
    """Encode to 8-bit mu-law (mu 255) and decode back."""
    mu = 255.0
    compressed = np.sign(wave) * np.log1p(mu * np.minimum(np.abs(wave), 1.0)) / np.log1p(mu)
    code = np.round((compressed + 1.0) * 127.5) / 127.5 - 1.0
    return np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu


def _soft_limit(wave: np.ndarray) -> np.ndarray:
    """Identity below LIMITER_KNEE, then a tanh knee that never reaches full scale (0.99)."""
    over = np.abs(wave) > LIMITER_KNEE
    headroom = 0.99 - LIMITER_KNEE
    excess = (np.abs(wave[over]) - LIMITER_KNEE) / headroom
    limited = wave.copy()
    limited[over] = np.sign(wave[over]) * (LIMITER_KNEE + headroom * np.tanh(excess))
    return limited


def apply_channel(
    clean: np.ndarray, channel: SessionChannel, rng: np.random.Generator | None
) -> np.ndarray:
    """Record `clean` (n,) through `channel`: room, noise, microphone, gain, band, limiter.

    `rng` picks the noise excerpt; with `rng=None` no noise is added, so the result depends
    on the channel alone (for the linear band effects it is `clean` convolved with one fixed
    impulse response). Returns float32 (n,).
    """
    recorded = fftconvolve(clean, channel.rir)[: clean.size]
    if rng is not None:
        start = int(rng.integers(channel.noise_bed.size))
        excerpt = np.take(channel.noise_bed, np.arange(start, start + clean.size), mode="wrap")
        noise_power = max(float(np.mean(excerpt**2)), 1e-12)
        speech_power = float(np.mean(recorded**2))
        scale = np.sqrt(speech_power / (noise_power * 10.0 ** (channel.snr_db / 10.0)))
        recorded = recorded + excerpt * scale
    recorded = sosfilt(channel.eq_sos, recorded) * 10.0 ** (channel.gain_db / 20.0)
    if channel.band_sos.size:
        recorded = sosfilt(channel.band_sos, recorded)
    if channel.band_effect == "mulaw":
        recorded = _mulaw_8bit(recorded)
    return _soft_limit(recorded).astype(np.float32)
