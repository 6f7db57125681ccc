"""Self-supervised positive sampling: memories, spherical k-means, samplers, diagnostics."""

from .kmeans import nearest_clusters, spherical_kmeans
from .ssps import SAMPLERS, SSPS, SSPSConfig

__all__ = ["SAMPLERS", "SSPS", "SSPSConfig", "nearest_clusters", "spherical_kmeans"]
