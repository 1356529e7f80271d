"""Implementations of the inference interface (:class:`pipeline.inference.ModelClient`).

* :mod:`pipeline.engines.batching`: one thread owns in-process models and serves batched requests;
* :mod:`pipeline.engines.transformers`: Hugging Face transformers models for it (imports torch).
"""
