"""Reading, verifying and writing OCI images (archives and layouts)."""

from ocislim.image.source import Image, Layer, LayerStream, open_image

__all__ = ["Image", "Layer", "LayerStream", "open_image"]
