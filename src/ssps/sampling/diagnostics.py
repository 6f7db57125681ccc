"""SSPS diagnostics from labels (only when the manifest has them; never used to train):
coverage, pseudo-positive speaker / session accuracy, and NMI of the clustering."""

from __future__ import annotations

import torch
from sklearn.metrics import normalized_mutual_info_score

from ..distributed import is_distributed


class EpochDiagnostics:
    """Counts over an epoch's anchors: found a pseudo-positive, same speaker, same session."""

    KEYS = ("anchors", "found", "same_speaker", "same_session", "useful")

    def __init__(self) -> None:
        self.counts = torch.zeros(len(self.KEYS), dtype=torch.float64)
        self.labelled = False

    def record(self, indices, slots, queue_indices, speakers, sessions) -> None:
        found = slots >= 0
        row = [indices.numel(), int(found.sum())]
        if speakers is not None:
            self.labelled = True
            other = queue_indices[slots.clamp(min=0)]
            same_spk = found & (speakers[other] == speakers[indices])
            same_ses = (
                found & (sessions[other] == sessions[indices])
                if sessions is not None
                else torch.zeros_like(found)
            )
            row += [int(same_spk.sum()), int(same_ses.sum()), int((same_spk & ~same_ses).sum())]
        else:
            row += [0, 0, 0]
        self.counts += torch.tensor(row, dtype=torch.float64)

    def summary(self) -> dict[str, float]:
        counts = self.counts.clone()
        if is_distributed():  # NCCL reduces CUDA tensors only
            nccl = torch.distributed.get_backend() == "nccl"
            counts = counts.cuda() if nccl else counts
            torch.distributed.all_reduce(counts)
            counts = counts.cpu()
        anchors, found, spk, ses, useful = counts.tolist()
        if anchors == 0:
            return {}
        out = {"ssps_coverage": found / anchors}
        if found and self.labelled:
            out.update(
                ssps_speaker_accuracy=spk / found,
                ssps_session_accuracy=ses / found,
                ssps_useful=useful / found,
            )
        return out


def clustering_nmi(assign_seen, seen, speakers, sessions) -> dict[str, float]:
    """NMI of the cluster assignment of the seen utterances against speakers and sessions."""
    clusters = assign_seen.cpu().numpy()
    out = {
        "kmeans_nmi_speaker": normalized_mutual_info_score(speakers[seen].cpu().numpy(), clusters)
    }
    if sessions is not None:
        out["kmeans_nmi_session"] = normalized_mutual_info_score(
            sessions[seen].cpu().numpy(), clusters
        )
    return out
