"""What decides whether an answer is given: the rejection check (Mahalanobis distances of features and image
statistics) and conformal prediction sets. Fitted by ``calibration``, stored in a model folder."""
