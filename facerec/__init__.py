"""Face-recognition pipeline library shared by the DVC stages."""
