"""Answering: a ``Predictor`` (probabilities, decisions, prediction sets, refusals, Grad-CAM maps), routing an
image to the model that recognises it, tiling large images and slides, and exporting to ONNX."""
