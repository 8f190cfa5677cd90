"""AI on images: the model registry and manifests, the built-in quality model, synthetic artifacts and series scoring (torch is imported only where a model runs)."""
