"""The built-in synthetic multi-session speaker corpus: procedural voices recorded in sessions.

It lets training and the demo run without VoxCeleb, and it has the property SSPS is for:
all utterances of a session share one recording channel, so an encoder trained with
same-utterance positives can learn the channel instead of the speaker.

- `voices`: speaker traits (`Voice`) and source-filter speech synthesis.
- `channels`: the per-session recording channel (`SessionChannel`, `apply_channel`).
- `corpus`: the VoxCeleb-like layout on disk, manifests, trials and caching
  (`CorpusConfig`, `generate_corpus`).
"""

from .channels import SessionChannel, apply_channel, sample_channel
from .corpus import (
    CorpusConfig,
    CorpusError,
    RenderedUtterance,
    generate_corpus,
    render_speaker,
    sample_trials,
    session_channel,
    speaker_voice,
)
from .presets import CORPUS_PRESETS, preset_config
from .voices import SessionProsody, Voice, sample_session_prosody, sample_voice, synthesize_speech

__all__ = [
    "CORPUS_PRESETS",
    "CorpusConfig",
    "CorpusError",
    "RenderedUtterance",
    "SessionChannel",
    "SessionProsody",
    "Voice",
    "apply_channel",
    "generate_corpus",
    "preset_config",
    "render_speaker",
    "sample_channel",
    "sample_session_prosody",
    "sample_trials",
    "sample_voice",
    "session_channel",
    "speaker_voice",
    "synthesize_speech",
]
