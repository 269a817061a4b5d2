"""The reconstruction network: layers and the image-to-point-cloud encoder/decoder."""
