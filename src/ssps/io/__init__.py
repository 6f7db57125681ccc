"""The ground floor every other part reads files through: audio (`audio`: reading, checks,
sample rates, paths under an audio root) and manifests (`manifest`). It imports nothing
else of the package, so training, evaluation, augmentation banks and inference share one
implementation of each check."""
