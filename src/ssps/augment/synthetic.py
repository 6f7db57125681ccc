"""Signals for the built-in augmentation banks, used when no MUSAN / RIR corpus is prepared.

- Room impulse responses: a shoebox room simulated with pyroomacoustics (image sources up to a
  low order for the direct path and early reflections) plus a late tail of exponentially
  decaying noise whose decay follows the drawn RT60 (slower at low, faster at high frequencies)
  and whose energy follows Sabine's diffuse-field theory (direct-to-reverberant ratio set by the
  source distance and the room's absorption area). Exact image sources up to RT60 0.9 s take
  seconds per room; this hybrid takes milliseconds.
- Noises: white, pink, brown, band-passed, random spectral slopes and mains hum, some slowly
  amplitude-modulated.
- Music-like: tonal mixtures of 2-4 voices on a random scale and tempo, harmonic notes with
  decaying envelopes, sometimes with percussive clicks and thumps.
- Speech-like talkers: a source-filter synthesiser (glottal pulse train with a wandering F0,
  vowel formant resonators changing every syllable, fricative noise bursts, syllabic envelope
  and pauses). One talker is not speech, but a sum of several is a plausible babble.

Every generator takes a numpy Generator and returns float32 arrays.
"""

from __future__ import annotations

import numpy as np
import pyroomacoustics as pra
from scipy.signal import lfilter

RT60_RANGE_S = (0.2, 0.9)
EARLY_REFLECTION_ORDER = 6
SOUND_SPEED_M_S = 343.0
# Vowel formants (F1, F2, F3) in Hz, adult male (Peterson & Barney averages).
VOWEL_FORMANTS_HZ = np.array(
    [
        [730, 1090, 2440],
        [270, 2290, 3010],
        [300, 870, 2240],
        [530, 1840, 2480],
        [570, 840, 2410],
        [660, 1720, 2410],
        [490, 1350, 1690],
        [440, 1020, 2240],
    ],
    dtype=np.float64,
)
SCALES = ([0, 2, 4, 5, 7, 9, 11], [0, 2, 3, 5, 7, 8, 10], [0, 2, 4, 7, 9])


def _draw_room(rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
    """(room dimensions in m, RT60 in s, wall energy absorption) that Sabine can realise."""
    while True:
        dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
        rt60 = float(rng.uniform(*RT60_RANGE_S))
        try:
            absorption, _ = pra.inverse_sabine(rt60, dims)
        except ValueError:
            continue
        return dims, rt60, absorption


def _band_decay_tail(rng: np.random.Generator, n: int, sample_rate: int, rt60: float) -> np.ndarray:
    """Noise decaying 60 dB in `rt60` (x1.0-1.3 below 500 Hz, x0.5-0.8 above 4 kHz), with onset."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    bands = [(0.0, 500.0, rng.uniform(1.0, 1.3)), (500.0, 4000.0, 1.0)]
    bands.append((4000.0, sample_rate / 2 + 1, rng.uniform(0.5, 0.8)))
    time_s = np.arange(n) / sample_rate
    onset = 1.0 - np.exp(-time_s / rng.uniform(0.005, 0.02))
    tail = np.zeros(n)
    for low, high, rt60_factor in bands:
        band = np.fft.irfft(spectrum * ((freqs >= low) & (freqs < high)), n)
        tail += band * np.exp(-6.908 * time_s / (rt60 * rt60_factor))
    return tail * onset


def simulate_rir(
    rng: np.random.Generator, sample_rate: int, length: int
) -> tuple[np.ndarray, float]:
    """One room impulse response (length,) with unit energy, direct path near the start, and
    the RT60 it was drawn with."""
    dims, rt60, absorption = _draw_room(rng)
    while True:
        source, mic = rng.uniform(0.5, dims - 0.5, size=(2, 3))
        distance = float(np.linalg.norm(source - mic))
        if distance >= 0.7:
            break
    room = pra.ShoeBox(
        dims,
        fs=sample_rate,
        materials=pra.Material(absorption),
        max_order=EARLY_REFLECTION_ORDER,
        air_absorption=False,
    )
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    early = np.asarray(room.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(early)))
    direct_energy = float(np.sum(early[max(direct - 32, 0) : direct + 33] ** 2))
    surface = 2 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
    mean_absorption = min(0.161 * float(np.prod(dims)) / (surface * rt60), 0.95)
    reverberant_energy = (
        direct_energy
        * 16
        * np.pi
        * distance**2
        * (1 - mean_absorption)
        / (surface * mean_absorption)
    )
    early_energy = float(np.sum(early**2)) - direct_energy
    tail_energy = max(reverberant_energy - early_energy, 0.1 * reverberant_energy)
    total = max(length + direct, early.size)
    tail = _band_decay_tail(rng, total - direct, sample_rate, rt60)
    rir = np.zeros(total)
    rir[: early.size] = early
    rir[direct:] += tail * np.sqrt(tail_energy / np.sum(tail**2))
    start = max(direct - 32, 0)
    rir = rir[start : start + length]
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32), rt60


def _normalise_peak(wave: np.ndarray, peak: float = 0.5) -> np.ndarray:
    return (wave * (peak / max(float(np.max(np.abs(wave))), 1e-9))).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """White, pink, brown, band-passed, random-slope or hum noise (n,), peak 0.5."""
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    freqs[0] = freqs[1]
    kind = rng.integers(6)
    if kind == 5:  # mains hum: harmonics of 50 or 60 Hz over faint white noise
        time_s = np.arange(n) / sample_rate
        base = 50.0 if rng.random() < 0.5 else 60.0
        harmonics = np.arange(1, 9)
        amplitudes = rng.uniform(0.0, 1.0, size=8) / harmonics
        phases = rng.uniform(0, 2 * np.pi, size=8)
        wave = np.zeros(n)
        for harmonic, amplitude, phase in zip(harmonics, amplitudes, phases, strict=True):
            wave += amplitude * np.sin(2 * np.pi * base * harmonic * time_s + phase)
        wave += 0.02 * rng.standard_normal(n)
        return _normalise_peak(wave)
    slopes = {0: 0.0, 1: 1.0, 2: 2.0, 4: rng.uniform(-1.0, 2.5)}
    if kind == 3:  # band-passed: a Gaussian bump on the log-frequency axis
        centre = rng.uniform(np.log(200.0), np.log(6000.0))
        width = rng.uniform(0.3, 2.0) * np.log(2.0)
        gain = np.exp(-0.5 * ((np.log(freqs) - centre) / width) ** 2)
    else:  # power spectrum proportional to f^-slope
        gain = freqs ** (-slopes[int(kind)] / 2)
    wave = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * gain, n)
    if rng.random() < 0.5:
        time_s = np.arange(n) / sample_rate
        rate = rng.uniform(0.1, 4.0)
        wave *= 1 + rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * rate * time_s + rng.uniform(0, 6))
    return _normalise_peak(wave)


def _voice(rng: np.random.Generator, n: int, sample_rate: int, beat_s: float) -> np.ndarray:
    """One melodic voice: notes of whole beats on a scale, harmonic timbre, decaying notes."""
    scale = SCALES[rng.integers(len(SCALES))]
    root = int(rng.integers(40, 64))
    note_beats = float(rng.choice([0.5, 1.0, 2.0]))
    n_notes = int(np.ceil(n / (note_beats * beat_s * sample_rate))) + 1
    note_samples = int(note_beats * beat_s * sample_rate)
    degrees = rng.integers(len(scale), size=n_notes)
    octaves = rng.integers(0, 2, size=n_notes) * 12
    midi = root + np.asarray(scale)[degrees] + octaves
    f0 = np.repeat(440.0 * 2 ** ((midi - 69) / 12), note_samples)[:n]  # (n,) Hz
    phase = np.mod(2 * np.pi * np.cumsum(f0) / sample_rate, 2 * np.pi).astype(np.float32)
    n_harmonics = int(rng.integers(3, 9))
    rolloff = rng.uniform(1.0, 2.5)
    wave = np.zeros(n, dtype=np.float32)
    for harmonic in range(1, n_harmonics + 1):
        audible = f0 * harmonic < sample_rate / 2
        wave += audible * np.sin(harmonic * phase) / harmonic**rolloff
    in_note_s = (np.arange(n) % note_samples) / sample_rate
    envelope = np.minimum(in_note_s / 0.01, 1.0) * np.exp(-in_note_s * rng.uniform(1.0, 6.0))
    return wave * envelope * rng.uniform(0.3, 1.0)


def tonal_music(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """A music-like mixture (n,), peak 0.5: 2-4 voices at one tempo, maybe with percussion."""
    beat_s = 60.0 / rng.uniform(60.0, 160.0)
    wave = sum(_voice(rng, n, sample_rate, beat_s) for _ in range(int(rng.integers(2, 5))))
    if rng.random() < 0.5:
        beat_samples = int(beat_s * sample_rate)
        in_beat_s = (np.arange(n) % beat_samples) / sample_rate
        thump = np.sin(2 * np.pi * (150 * in_beat_s - 250 * in_beat_s**2)) * np.exp(-in_beat_s * 25)
        click = np.diff(rng.standard_normal(n + 1)) * np.exp(-in_beat_s * 60)
        wave = wave + rng.uniform(0.2, 1.0) * thump + rng.uniform(0.0, 0.3) * click
    return _normalise_peak(wave)


def _resonator(freq_hz: float, bandwidth_hz: float, sample_rate: int) -> np.ndarray:
    """Denominator of a two-pole resonance (unit gain at DC is not needed: levels normalised)."""
    radius = np.exp(-np.pi * bandwidth_hz / sample_rate)
    return np.array([1.0, -2 * radius * np.cos(2 * np.pi * freq_hz / sample_rate), radius**2])


def speech_like(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """One synthetic talker (n,), peak 0.5: voiced syllables with moving formants and pauses."""
    base_f0 = rng.uniform(90.0, 240.0)
    tract_scale = rng.uniform(0.85, 1.2)
    bounds = [0]
    voiced = []
    while bounds[-1] < n:
        pause = rng.random() < 0.15
        duration = rng.uniform(0.1, 0.5) if pause else rng.uniform(0.12, 0.35)
        bounds.append(min(n, bounds[-1] + int(duration * sample_rate)))
        voiced.append(not pause)
    knots = np.linspace(0, n, len(bounds) + 1)
    f0 = np.interp(np.arange(n), knots, base_f0 * rng.uniform(0.8, 1.25, size=knots.size))
    pulses = np.diff(np.floor(np.cumsum(f0) / sample_rate), prepend=0.0)
    source = lfilter([1.0], [1.0, -0.95], pulses) + 0.05 * rng.standard_normal(n)
    wave = np.zeros(n)
    states = [np.zeros(2) for _ in range(3)]
    for start, stop, is_voiced in zip(bounds[:-1], bounds[1:], voiced, strict=True):
        segment = source[start:stop]
        formants = VOWEL_FORMANTS_HZ[rng.integers(len(VOWEL_FORMANTS_HZ))] * tract_scale
        for index, (formant, bandwidth) in enumerate(zip(formants, (60, 90, 120), strict=True)):
            a = _resonator(formant, bandwidth, sample_rate)
            segment, states[index] = lfilter([1.0], a, segment, zi=states[index])
        length = stop - start
        envelope = np.sin(np.pi * np.arange(length) / max(length, 1)) ** 0.5 * float(is_voiced)
        wave[start:stop] = segment * envelope / max(float(np.std(segment)), 1e-9)
        if is_voiced and rng.random() < 0.5:
            burst = min(int(rng.uniform(0.02, 0.08) * sample_rate), length)
            hiss = np.diff(rng.standard_normal(burst + 1)) * np.hanning(burst)
            wave[start : start + burst] += rng.uniform(0.1, 0.5) * hiss
    return _normalise_peak(wave)
