"""Named shapes of the synthetic corpus (`ssps prepare synthetic OUT --preset NAME`)."""

from __future__ import annotations

from .corpus import CorpusConfig, CorpusError

# Named corpus shapes. "voxceleb-shaped" is VoxCeleb2's shape scaled to a CPU (many sessions
# per speaker, few utterances each; VoxCeleb2 has ~24 videos per speaker, ~8 utterances per
# video), with channels that a reverb + noise augmentation does not imitate and voices far
# enough apart that a small base still finds a speaker's other sessions: the regime where
# SSPS can help (docs/synthetic_corpus.md). "voxceleb-shaped-demo" is its scaled-down
# version for `ssps demo`.
CORPUS_PRESETS: dict[str, dict] = {
    "default": {},
    "voxceleb-shaped": dict(
        train_speakers=200,
        test_speakers=60,
        sessions_per_speaker=20,
        utterances_per_session=2,
        n_trials=20000,
        channel_spread=2.0,
        speaker_spread=2.0,
        min_snr_db=20.0,
        max_snr_db=35.0,
    ),
    "voxceleb-shaped-demo": dict(
        train_speakers=100,
        test_speakers=120,
        sessions_per_speaker=12,
        utterances_per_session=2,
        test_sessions_per_speaker=6,
        n_trials=12000,
        channel_spread=2.0,
        speaker_spread=2.0,
        min_snr_db=20.0,
        max_snr_db=35.0,
    ),
}


def preset_config(name: str, **overrides) -> CorpusConfig:
    """The CorpusConfig of preset `name` with `overrides` applied."""
    if name not in CORPUS_PRESETS:
        raise CorpusError(f"unknown corpus preset {name!r}; presets: {', '.join(CORPUS_PRESETS)}")
    return CorpusConfig(**{**CORPUS_PRESETS[name], **overrides})
