"""The demo's printed tables and its `report.md`: regime line, results with paired
intervals and one sentence per comparison, channel probes, every plot linked."""

from __future__ import annotations

from pathlib import Path

SSPS_KEYS = ("ssps_coverage", "ssps_speaker_accuracy", "ssps_session_accuracy", "ssps_useful")
SMOKE = "SMOKE RUN (--quick): a tiny corpus and budget; the numbers below mean nothing.\n"


def format_regime_summary(regime: dict, smoke: bool) -> str:
    if not regime:
        return ""
    return (
        (SMOKE if smoke else "") + f"Regime: {regime['train_speakers']} train speakers x "
        f"{regime['sessions_per_speaker']} sessions x {regime['utterances_per_session']} "
        f"utterances; base cross-session EER {regime['base_eer']:.2f} %. One simulated SSPS "
        f"epoch on the base (K {regime['n_clusters']}, M {regime['neighbours']}, |Q_pos| "
        f"{regime['queue_size']}): coverage {regime.get('ssps_coverage', 0):.2f}, useful "
        f"positives (same speaker, other session) {regime.get('ssps_useful', 0):.2f}.\n"
    )


def format_table(results: list[dict]) -> str:
    lines = [
        "| run | EER % [95 % CI] | minDCF(0.01) | vs continued, relative % [95 % CI] "
        "| SSPS coverage | same speaker | same session | useful |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ssps = [f"{r[k]:.2f}" if k in r else "" for k in SSPS_KEYS]
        eer = f"{r['eer']:.2f}"
        if r.get("eer_ci95"):
            eer += f" [{r['eer_ci95'][0]:.2f}, {r['eer_ci95'][1]:.2f}]"
        relative = ""
        if r.get("eer_relative_ci95"):
            lo, hi = r["eer_relative_ci95"]
            relative = f"{r['eer_relative_pct']:+.1f} [{lo:+.1f}, {hi:+.1f}]"
        lines.append(
            f"| {r['name']} | {eer} | {r['min_dcf']:.4f} | {relative} | " + " | ".join(ssps) + " |"
        )
    return "\n".join(lines)


def format_analysis(analyses: dict[str, dict]) -> str:
    """Channel information left in the embeddings: probes and score statistics per run."""
    lines = [
        "| run | speaker probe acc. | session probe acc. given speaker (chance) "
        "| mean cos same-session target | mean cos cross-session target | mean cos non-target |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, a in analyses.items():
        spk, ses, sim = a["speaker_probe"], a.get("session_probe", {}), a["similarity"]
        given = ses.get("accuracy_given_speaker")
        session = f"{given:.2f} ({ses['chance_given_speaker']:.2f})" if given is not None else ""
        lines.append(
            f"| {name} | {spk.get('accuracy', float('nan')):.2f} | {session} | "
            f"{_mean(sim, 'same_session')} | {_mean(sim, 'cross_session')} | "
            f"{_mean(sim, 'inter')} |"
        )
    return "\n".join(lines)


def _mean(similarity: dict, key: str) -> str:
    value = similarity.get(key, {}).get("mean")
    return "" if value is None else f"{value:.3f}"


DIAGNOSTICS = """The SSPS columns (last epoch): *coverage* is the share of anchors that got a
pseudo-positive (the others keep their ordinary same-utterance positive); *same speaker* and
*same session* are the shares of those positives that are the anchor's speaker or its very
session; *useful* is the share that is the anchor's speaker in another session, the only
kind that teaches the encoder to ignore the channel. A positive of another speaker teaches
the wrong thing, and wrong positives feed on themselves (the next clustering is worse):
watch the useful share per epoch in each run's metrics.jsonl.

SSPS can only win where a speaker spans several sessions that the base already puts near
each other: many sessions per speaker and a base good enough across sessions
(`ssps regime-model` gives the expected useful share for a corpus shape and base EER).
With labels on part of your own data, measure instead: `ssps sweep-positives RUN
--manifest train.csv --clusters ... --neighbours ...` runs one simulated SSPS epoch on a
base run's embeddings in seconds. Mostly useful positives: SSPS can help; mostly other
speakers: it will hurt, whatever the training budget."""


def interpret(results: list[dict]) -> str:
    """One sentence per comparison with continued SimCLR, read off the paired intervals."""
    lines = []
    for r in results:
        if r["name"] not in ("simclr-ssps", "simclr-oracle") or not r.get("eer_relative_ci95"):
            continue
        lo, hi = r["eer_relative_ci95"]
        verdict = (
            "better than"
            if hi < 0
            else "worse than"
            if lo > 0
            else "not measurably different from (the interval includes 0 at this test size)"
        )
        lines.append(
            f"- {r['name']} {'lowers' if r['eer_relative_pct'] < 0 else 'raises'} the EER by "
            f"{abs(r['eer_relative_pct']):.1f} % [{lo:+.1f}, {hi:+.1f}] against continued "
            f"SimCLR: {verdict} it" + (" (outside the noise)." if hi < 0 or lo > 0 else ".")
        )
    lines.append(
        "- The oracle (true speaker, other session) bounds what any positive sampler can win "
        "at this budget; SSPS's useful share says how close its positives come to it."
    )
    return "\n".join(lines)


def write_report(
    out: Path,
    corpus: Path,
    results: list[dict],
    regime: dict,
    analyses: dict,
    elapsed: float,
    smoke: bool,
) -> None:
    hist = "\n".join(f"![{r['name']}](scores_{r['name']}.png)" for r in results)
    pictures = "\n".join(
        f"### {name}\n\n"
        + " ".join(
            f"![{kind}](analysis/{name}/{file})" for kind, file in a.get("plots", {}).items()
        )
        + "\n"
        for name, a in analyses.items()
    )
    (out / "report.md").write_text(
        "# ssps demo\n\n"
        f"Synthetic multi-session corpus in `{corpus}`; test targets are cross-session pairs, so\n"
        "an encoder that learned the recording channel is punished. All runs after the base\n"
        "start from its checkpoint and train the same number of epochs. Intervals: 95 %,\n"
        "resampling test speakers; the relative column pairs each run with continued SimCLR:\n"
        "a negative value is a lower EER, i.e. better (-12 % = 12 % fewer errors).\n\n"
        f"## Regime\n\n{format_regime_summary(regime, smoke)}\n{DIAGNOSTICS}\n\n"
        f"## Results\n\n{format_table(results)}\n\n{interpret(results)}\n\n"
        f"Total time {elapsed / 60:.1f} min ({'quick smoke run' if smoke else 'full'} demo)."
        f"\n\n![DET curves](det.png)\n\n{hist}\n\n"
        "## What the encoders learned (test speakers)\n\n"
        "A linear probe that predicts the session of an utterance, given its speaker, measures\n"
        "the channel information left in the embedding (lower is better for verification).\n\n"
        f"{format_analysis(analyses)}\n\n{pictures}"
    )
