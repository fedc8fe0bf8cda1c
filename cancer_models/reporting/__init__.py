"""Turning records into text people read: model cards, markdown tables, the single-image HTML report and the
training data's licences and citations."""
