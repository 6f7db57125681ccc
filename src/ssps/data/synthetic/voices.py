"""Procedural speaker voices and fast source-filter speech synthesis for the synthetic corpus.

A `Voice` is one speaker's traits, drawn by `sample_voice` from two overlapping populations
(low and high F0 / short and long vocal tract): F0 level and range, jitter, shimmer,
breathiness, glottal open quotient, spectral tilt, vocal-tract length (formant scale), fixed
per-formant offsets and bandwidths, a vowel "accent", vowel and consonant habits and the
speaking rate. `synthesize_speech` renders random syllables (vowels, nasals, fricatives,
plosives, pauses) with per-utterance intonation: a Rosenberg glottal pulse train plus
aspiration and frication noise, shaped by time-varying formant filters in the STFT domain.
Everything is vectorised numpy/scipy; the Python loop runs once per syllable, not per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

# Adult-male F1-F3 (Hz) of eleven vowels (Peterson & Barney / Hillenbrand averages).
VOWEL_FORMANTS_HZ = np.array(
    [
        [270, 2290, 3010],  # i
        [390, 1990, 2550],  # I
        [530, 1840, 2480],  # E
        [660, 1720, 2410],  # ae
        [730, 1090, 2440],  # a
        [570, 840, 2410],  # o (open)
        [440, 1020, 2240],  # U
        [300, 870, 2240],  # u
        [640, 1190, 2390],  # V
        [490, 1350, 1690],  # r-coloured
        [500, 1500, 2500],  # schwa (SCHWA)
    ],
    dtype=np.float64,
)
SCHWA = 10  # row of the neutral vowel, used for the leading silence
HIGHER_FORMANTS_HZ = np.array([3500.0, 4500.0])  # F4, F5 of the same adult male
BASE_BANDWIDTHS_HZ = np.array([60.0, 90.0, 120.0, 180.0, 250.0])
NASAL_FORMANTS_HZ = np.array([280.0, 1100.0, 2300.0, 3400.0, 4400.0])
# Frication noise (centre Hz, bandwidth Hz, level) of /s/, /sh/, /f/ and bursts of /p t k/.
FRICATIVES = np.array([[6000, 2000, 1.0], [3000, 1200, 0.8], [4500, 6000, 0.3]])
BURSTS = np.array([[1200, 2000, 0.8], [4000, 2500, 1.0], [2200, 1200, 1.0]])
CONSONANT_KINDS = ("fricative", "plosive", "nasal", "aspirate")
TARGET_RMS = 0.05  # -26 dBFS
WINDOW_SECONDS = 0.032
N_FORMANTS = 5


@dataclass
class Voice:
    """One speaker's traits; every utterance of the speaker is rendered from these."""

    population: int  # 0: low-F0 / long vocal tract, 1: high-F0 / short vocal tract
    f0_hz: float  # median fundamental frequency
    f0_range_semitones: float  # size of intonation excursions
    jitter: float  # relative period-to-period F0 perturbation (std)
    shimmer: float  # relative period-to-period amplitude perturbation (std)
    breathiness: float  # aspiration noise relative to voicing
    open_quotient: float  # fraction of a glottal period with the glottis open
    tilt_db_per_octave: float  # extra source spectral slope
    formant_scale: float  # all formants x this (inverse vocal-tract length)
    formant_offsets: np.ndarray  # (5,) fixed log-offsets of F1-F5
    bandwidth_scale: float  # formant bandwidths x this
    vowel_offsets: np.ndarray  # (n_vowels, 3) per-vowel log-offsets of F1-F3 (accent)
    vowel_weights: np.ndarray  # (n_vowels,) how often each vowel is used
    consonant_weights: np.ndarray  # (4,) fricative / plosive / nasal / aspirate habits
    frication_scale: float  # fricative and burst centre frequencies x this
    syllable_rate: float  # syllables per second


def sample_voice(rng: np.random.Generator, spread: float = 1.0) -> Voice:
    """Draw a speaker from the two overlapping populations; `spread` scales how far
    speakers scatter around their population in pitch, vocal-tract length and formants."""
    population = int(rng.random() < 0.5)
    f0_centre, vtl_centre = ((115.0, 1.0), (205.0, 1.15))[population]
    n_vowels = VOWEL_FORMANTS_HZ.shape[0]
    return Voice(
        population=population,
        f0_hz=float(f0_centre * rng.lognormal(0.0, 0.16 * spread)),
        f0_range_semitones=float(rng.uniform(1.5, 5.0)),
        jitter=float(rng.uniform(0.003, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.12)),
        breathiness=float(rng.uniform(0.02, 0.15) + 0.1 * population * rng.random()),
        open_quotient=float(rng.uniform(0.4, 0.75)),
        tilt_db_per_octave=float(rng.uniform(-3.0, 3.0)),
        formant_scale=float(vtl_centre * rng.lognormal(0.0, 0.045 * spread)),
        formant_offsets=rng.normal(0.0, 0.04 * spread, N_FORMANTS),
        bandwidth_scale=float(rng.lognormal(0.0, 0.25)),
        vowel_offsets=rng.normal(0.0, 0.05 * spread, (n_vowels, 3)),
        vowel_weights=rng.dirichlet(np.full(n_vowels, 1.5)),
        consonant_weights=rng.dirichlet(np.array([3.0, 3.0, 2.0, 1.0])),
        frication_scale=float(rng.lognormal(0.0, 0.1)),
        syllable_rate=float(np.clip(rng.normal(4.3, 0.7), 2.8, 6.5)),
    )


class _Segments:
    """Per-segment controls of one utterance, appended in time order; lengths in samples."""

    def __init__(self) -> None:
        self.lengths: list[int] = []
        self.voicing: list[float] = []
        self.aspiration: list[float] = []
        self.frication: list[float] = []
        self.frication_filter: list[tuple[float, float]] = []  # (centre Hz, bandwidth Hz)
        self.formants: list[np.ndarray] = []  # (5,) Hz
        self.accents: list[tuple[int, int]] = []  # (centre sample, width) of pitch accents
        self.phrase_ends: list[int] = []  # sample where each phrase ends
        self.total = 0

    def add(
        self,
        samples: float,
        formants: np.ndarray,
        voicing: float = 0.0,
        aspiration: float = 0.0,
        frication: float = 0.0,
        frication_filter: tuple[float, float] = (4000.0, 4000.0),
    ) -> None:
        length = max(1, int(samples))
        self.lengths.append(length)
        self.formants.append(formants)
        self.voicing.append(voicing)
        self.aspiration.append(aspiration)
        self.frication.append(frication)
        self.frication_filter.append(frication_filter)
        self.total += length


def _vowel_formants(voice: Voice, vowel: int) -> np.ndarray:
    """(5,) formant frequencies (Hz) of `vowel` spoken by `voice`."""
    log_offsets = voice.formant_offsets.copy()
    log_offsets[:3] += voice.vowel_offsets[vowel]
    base = np.concatenate([VOWEL_FORMANTS_HZ[vowel], HIGHER_FORMANTS_HZ])
    return base * voice.formant_scale * np.exp(log_offsets)


def _plan_segments(
    voice: Voice, n_samples: int, sample_rate: int, rng: np.random.Generator, rate_scale: float
) -> _Segments:
    """Random syllables at the voice's rate, grouped in phrases separated by pauses."""
    seg = _Segments()
    syllable = sample_rate / (voice.syllable_rate * rate_scale)
    seg.add(rng.uniform(0.05, 0.2) * sample_rate, _vowel_formants(voice, SCHWA))
    phrase_left = int(rng.integers(3, 10))
    while seg.total < n_samples:
        vowel = int(rng.choice(len(voice.vowel_weights), p=voice.vowel_weights))
        formants = _vowel_formants(voice, vowel)
        stretch = rng.lognormal(0.0, 0.25)
        if rng.random() < 0.75:
            _add_consonant(seg, voice, rng, syllable * stretch, formants)
        vowel_length = syllable * 0.55 * stretch
        if rng.random() < 0.3:
            seg.accents.append((int(seg.total + vowel_length / 2), int(vowel_length)))
        seg.add(vowel_length, formants, voicing=1.0, aspiration=voice.breathiness)
        if rng.random() < 0.25:
            _add_consonant(seg, voice, rng, syllable * 0.7 * stretch, formants)
        phrase_left -= 1
        if phrase_left == 0:
            seg.phrase_ends.append(seg.total)
            seg.add(rng.uniform(0.12, 0.45) * sample_rate, formants)
            phrase_left = int(rng.integers(3, 10))
    seg.phrase_ends.append(seg.total)
    return seg


def _add_consonant(
    seg: _Segments, voice: Voice, rng: np.random.Generator, syllable: float, formants: np.ndarray
) -> None:
    """Append one consonant, coarticulated with the vowel whose `formants` are given."""
    kind = CONSONANT_KINDS[int(rng.choice(4, p=voice.consonant_weights))]
    if kind == "fricative":
        centre, width, level = FRICATIVES[int(rng.integers(len(FRICATIVES)))]
        filt = (centre * voice.frication_scale, width)
        seg.add(syllable * rng.uniform(0.25, 0.4), formants, frication=level, frication_filter=filt)
    elif kind == "plosive":
        centre, width, level = BURSTS[int(rng.integers(len(BURSTS)))]
        filt = (centre * voice.frication_scale, width)
        seg.add(syllable * rng.uniform(0.12, 0.2), formants)
        seg.add(syllable * 0.05, formants, frication=level, frication_filter=filt)
        seg.add(syllable * rng.uniform(0.03, 0.12), formants, aspiration=0.4)
    elif kind == "nasal":
        nasal = NASAL_FORMANTS_HZ * voice.formant_scale * np.exp(voice.formant_offsets)
        seg.add(syllable * rng.uniform(0.15, 0.3), nasal, voicing=0.35)
    else:
        seg.add(syllable * rng.uniform(0.1, 0.2), formants, aspiration=0.5)


def _f0_track(
    voice: Voice,
    seg: _Segments,
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
    f0_scale: float,
) -> np.ndarray:
    """(n,) F0 in Hz: phrase declination, pitch accents, slow wander, optional final rise."""
    t = np.arange(n)
    semitones = np.zeros(n)
    starts = [0] + seg.phrase_ends[:-1]
    for start, end in zip(starts, seg.phrase_ends, strict=True):
        inside = (t >= start) & (t < end)
        drop = voice.f0_range_semitones * rng.uniform(0.4, 1.0)
        semitones[inside] = drop * (0.5 - (t[inside] - start) / max(end - start, 1))
    for centre, width in seg.accents:
        lo, hi = max(centre - 2 * width, 0), min(centre + 2 * width, n)
        height = voice.f0_range_semitones * rng.uniform(0.4, 1.0)
        semitones[lo:hi] += height * np.exp(-0.5 * ((t[lo:hi] - centre) / (0.5 * width)) ** 2)
    knots = rng.normal(0.0, 0.5, n // (sample_rate // 10) + 2)
    semitones += np.interp(t, np.linspace(0, n, knots.size), knots)
    if rng.random() < 0.2:
        rise = int(0.3 * sample_rate)
        semitones[-rise:] += np.linspace(0.0, voice.f0_range_semitones, min(rise, n))
    return np.clip(voice.f0_hz * f0_scale * 2.0 ** (semitones / 12.0), 50.0, 500.0)


def _glottal_source(
    voice: Voice, f0: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rosenberg pulse train with jitter and shimmer: (flow derivative, flow), both (n,)."""
    nominal_periods = np.cumsum(f0) / sample_rate
    period_jitter = rng.normal(0.0, voice.jitter, int(nominal_periods[-1]) + 2)
    phase = np.cumsum(f0 * (1.0 + period_jitter[nominal_periods.astype(np.int64)])) / sample_rate
    period = phase.astype(np.int64)
    frac = phase - period
    rise = voice.open_quotient * 0.65
    fall = voice.open_quotient * 0.35
    flow = np.where(frac < rise, 0.5 * (1.0 - np.cos(np.pi * frac / rise)), 0.0)
    closing = (frac >= rise) & (frac < rise + fall)
    flow[closing] = np.cos(0.5 * np.pi * (frac[closing] - rise) / fall)
    flow *= 1.0 + rng.normal(0.0, voice.shimmer, period[-1] + 1)[period]
    return np.diff(flow, prepend=0.0), flow


def _resonator_denominators(
    z: np.ndarray, centre: np.ndarray, bandwidth: np.ndarray, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cascade of two-pole resonators with (T, K) centres and bandwidths (Hz).

    Returns the product of their denominators at `z` = exp(-j w) of shape (F,), as (T, F)
    complex64, and at DC (T,), so that `dc / denominator` is the cascade with unit DC gain.
    """
    radius = np.exp(-np.pi * bandwidth / sample_rate)
    a1 = (-2.0 * radius * np.cos(2.0 * np.pi * centre / sample_rate)).astype(np.float32)
    a2 = (radius**2).astype(np.float32)
    z = z.astype(np.complex64)
    z2 = z * z
    denominator = np.ones((centre.shape[0], z.size), np.complex64)
    for k in range(centre.shape[1]):
        denominator *= 1.0 + a1[:, k, None] * z + a2[:, k, None] * z2
    return denominator, np.prod(1.0 + a1 + a2, axis=1)


def _resonance_peak(centre: np.ndarray, bandwidth: np.ndarray, sample_rate: int) -> np.ndarray:
    """|response| of one two-pole resonator (unit numerator) at its own centre frequency."""
    radius = np.exp(-np.pi * bandwidth / sample_rate)
    theta = 2.0 * np.pi * centre / sample_rate
    return 1.0 / ((1.0 - radius) * np.abs(1.0 - radius * np.exp(-2j * theta)))


def _spectra(signals: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(C, T, F) spectra of half-overlapping frames of (C, n) signals; frame t centred at t*hop."""
    hop = window.size // 2
    n = signals.shape[-1]
    n_frames = -(-n // hop) + 1
    padded = np.pad(signals, ((0, 0), (hop, n_frames * hop - n)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, window.size, axis=-1)[:, ::hop]
    return np.fft.rfft(frames * window, axis=-1)


def _overlap_add(spectra: np.ndarray, window: np.ndarray, n: int) -> np.ndarray:
    """Inverse of `_spectra` for one (T, F) signal; exact because window**2 sums to one."""
    hop = window.size // 2
    frames = np.fft.irfft(spectra, n=window.size, axis=-1) * window
    blocks = np.zeros((frames.shape[0] + 1, hop))
    blocks[:-1] += frames[:, :hop]
    blocks[1:] += frames[:, hop:]
    return blocks.ravel()[hop : hop + n]


def synthesize_speech(
    voice: Voice,
    n_samples: int,
    sample_rate: int,
    rng: np.random.Generator,
    rate_scale: float = 1.0,
    f0_scale: float = 1.0,
) -> np.ndarray:
    """(n_samples,) float64 speech of `voice` at -26 dBFS RMS; content and intonation from `rng`.

    `rate_scale` and `f0_scale` shift the voice's speaking rate and pitch (session drift).
    """
    if n_samples < sample_rate // 10:
        raise ValueError(f"n_samples must be at least 0.1 s ({sample_rate // 10}), got {n_samples}")
    seg = _plan_segments(voice, n_samples, sample_rate, rng, rate_scale)
    ends = np.cumsum(seg.lengths)
    total = seg.total
    smooth = max(1, int(0.008 * sample_rate))

    def per_sample(values: list[float]) -> np.ndarray:
        return uniform_filter1d(np.repeat(np.asarray(values), seg.lengths), smooth)

    f0 = _f0_track(voice, seg, total, sample_rate, rng, f0_scale)
    flow_derivative, flow = _glottal_source(voice, f0, sample_rate, rng)
    flow_derivative *= sample_rate / (np.pi * voice.f0_hz)  # similar level for every F0
    noise = rng.standard_normal((2, total))
    voicing, aspiration = per_sample(seg.voicing), per_sample(seg.aspiration)
    voiced = voicing * (flow_derivative + voice.breathiness * (0.3 + flow) * noise[0])
    voiced += aspiration * (1.0 - voicing) * 0.5 * noise[0]
    fricated = per_sample(seg.frication) * noise[1] * 0.3

    size = int(2 ** np.ceil(np.log2(WINDOW_SECONDS * sample_rate)))
    window = np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size))  # periodic
    hop = size // 2
    spectra = _spectra(np.stack([voiced, fricated]), window)  # (2, T, F)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    z = np.exp(-2j * np.pi * freqs / sample_rate)
    frame_segment = np.minimum(
        np.searchsorted(ends, np.arange(spectra.shape[1]) * hop, "right"), ends.size - 1
    )
    smooth_frames = max(1, int(0.04 * sample_rate / hop))
    formants = uniform_filter1d(np.asarray(seg.formants)[frame_segment], smooth_frames, axis=0)
    formants = np.minimum(formants, 0.47 * sample_rate)
    bandwidths = np.broadcast_to(BASE_BANDWIDTHS_HZ * voice.bandwidth_scale, formants.shape)
    tract_denominator, dc_gain = _resonator_denominators(z, formants, bandwidths, sample_rate)
    octaves = np.log2(np.maximum(freqs, 100.0) / 500.0)
    tilt = (10.0 ** (voice.tilt_db_per_octave * octaves / 20.0)).astype(np.float32)
    frication = np.asarray(seg.frication_filter)[frame_segment]
    centre = np.minimum(frication[:, :1], 0.45 * sample_rate)
    frication_denominator, _ = _resonator_denominators(z, centre, frication[:, 1:], sample_rate)
    peak = _resonance_peak(centre[:, 0], frication[:, 1], sample_rate).astype(np.float32)
    shaped = spectra[0] * (dc_gain.astype(np.float32)[:, None] * tilt) / tract_denominator
    shaped += spectra[1] / (frication_denominator * peak[:, None])
    speech = _overlap_add(shaped, window, n_samples)
    return speech * (TARGET_RMS / max(float(np.sqrt(np.mean(speech**2))), 1e-9))


@dataclass
class SessionProsody:
    """How a speaker talks in one session: rate and pitch relative to the voice."""

    rate_scale: float
    f0_scale: float


def sample_session_prosody(rng: np.random.Generator) -> SessionProsody:
    """A session's prosody drift: rate within +-10 %, F0 within +-8 %."""
    return SessionProsody(
        rate_scale=float(rng.uniform(0.9, 1.1)), f0_scale=float(rng.uniform(0.92, 1.08))
    )
